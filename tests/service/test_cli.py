"""The ``pixhook`` CLI against a running service and simulator."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from service.cli import cli
from service.demo import tiny_png
from tests.service.conftest import API_TOKEN, Stack


def _env(stack: Stack, **extra: str) -> dict[str, str]:
    return {
        "PIXHOOK_URL": stack.service_url,
        "PIXHOOK_API_TOKEN": API_TOKEN,
        "PIXVERSE_BASE_URL": stack.settings.pixverse_base_url,
        "PIXVERSE_API_KEY": stack.settings.pixverse_api_key,
        "PIXVERSE_WEBHOOK_SECRET": stack.settings.pixverse_webhook_secret,
        "PIXHOOK_DATABASE_URL": stack.settings.database_url,
        "PIXHOOK_CONFIG": "/nonexistent/pixhook.toml",
        **extra,
    }


async def _run(stack: Stack, *args: str, **env: str) -> Result:
    # The servers run on this event loop, so the (blocking) CLI runs in a thread.
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args), env=_env(stack, **env))


T2V_ARGS = ["--param", "model=v6", "--param", "duration=5", "--param", "quality=540p",
            "--param", "aspect_ratio=16:9"]


async def test_submit_wait_status_jobs_events_tasks(stack: Stack) -> None:
    async with stack.service():
        result = await _run(stack, "submit", "text_to_video", "--prompt", "a lantern",
                            *T2V_ARGS, "--label", "team=video", "--then",
                            '{"kind": "sound_effect", "params": {"sound_effect_content": "w"}}',
                            "--wait", "--json")
        assert result.exit_code == 0, result.output
        job: dict[str, Any] = json.loads(result.stdout)
        assert job["state"] == "succeeded" and job["labels"] == {"team": "video"}
        assert job["then"][0]["kind"] == "sound_effect"

        shown = await _run(stack, "status", job["id"])
        assert shown.exit_code == 0 and "succeeded" in shown.output
        assert "a lantern" in shown.output

        listed = await _run(stack, "jobs", "--state", "succeeded", "--json")
        assert job["id"] in [j["id"] for j in json.loads(listed.stdout)]
        table = await _run(stack, "jobs")
        assert table.exit_code == 0 and job["id"] in table.output and "state" in table.output

        timeline = await _run(stack, "events", job["id"])
        assert timeline.exit_code == 0
        assert "webhook" in timeline.output and "applied" in timeline.output

        await stack.wait_for_tasks(job["id"], "succeeded")
        tasks = json.loads((await _run(stack, "tasks", "--job", job["id"], "--json")).stdout)
        assert {t["handler"] for t in tasks} >= {"download", "followup"}
        assert "download" in (await _run(stack, "tasks", "--job", job["id"])).output


async def test_submit_with_an_image_uploads_it_first(stack: Stack, tmp_path: Path) -> None:
    image = tmp_path / "frame.png"
    image.write_bytes(tiny_png())
    async with stack.service():
        result = await _run(stack, "submit", "image_to_video", "--image", str(image),
                            "--prompt", "ripples", "--param", "model=v5", "--param",
                            "duration=5", "--param", "quality=360p", "--wait", "--json")
    assert result.exit_code == 0, result.output
    job = json.loads(result.stdout)
    assert job["state"] == "succeeded" and isinstance(job["params"]["img_id"], int)


async def test_a_job_that_fails_exits_1(stack: Stack) -> None:
    async with stack.service():
        result = await _run(stack, "submit", "text_to_video", "--prompt", "fail-me",
                            *T2V_ARGS, "--wait")
    assert result.exit_code == 1 and "failed" in result.stdout


@pytest.mark.parametrize(("args", "env", "code", "message"), [
    (["status", "job_nope"], {}, 1, "no such job"),
    (["tasks", "retry", "999999"], {}, 1, "no such task"),
    (["submit", "text_to_video", "--prompt", "x", *T2V_ARGS, "--param", "quality=9000p"], {}, 2,
     "params.quality"),
    (["submit", "warp_drive"], {}, 2, "(kind)"),
    (["jobs"], {"PIXHOOK_API_TOKEN": ""}, 2, "PIXHOOK_API_TOKEN is not set"),
    (["jobs"], {"PIXHOOK_API_TOKEN": "wrong"}, 2, "refused the API token"),
    (["jobs"], {"PIXHOOK_URL": "http://127.0.0.1:9"}, 2, "cannot reach pixhook"),
    (["submit", "text_to_video", "--param", "oops"], {}, 2, "is not KEY=VALUE"),
])
async def test_errors_are_one_clear_line_and_an_exit_code(stack: Stack, args: list[str],
                                                          env: dict[str, str], code: int,
                                                          message: str) -> None:
    async with stack.service():
        result = await _run(stack, *args, **env)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


async def test_reconcile_balance_and_config(stack: Stack) -> None:
    async with stack.service():
        reconciled = await _run(stack, "reconcile", "--once")
        assert reconciled.exit_code == 0 and "polled 0 overdue job(s)" in reconciled.output
        balance = await _run(stack, "balance", "--json")
        assert balance.exit_code == 0 and json.loads(balance.stdout)["total"] > 0
        shown = await _run(stack, "config")
        as_json = json.loads((await _run(stack, "config", "--json")).stdout)
    assert shown.exit_code == 0
    assert API_TOKEN not in shown.output and API_TOKEN not in json.dumps(as_json)
    rows = {row["name"]: row for row in as_json}
    assert rows["PIXHOOK_API_TOKEN"]["source"] == "env"
    assert rows["PIXHOOK_POLL_MODE"] == {**rows["PIXHOOK_POLL_MODE"], "source": "default",
                                         "value": "fallback"}


@pytest.mark.parametrize("command", [
    ["serve"], ["web"], ["worker"], ["sim"], ["demo"], ["submit"], ["status"], ["jobs"],
    ["events"], ["tasks"], ["tasks", "retry"], ["reconcile"], ["balance"], ["config"],
    ["cancel"],
])
def test_every_command_has_help_with_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0 and "Example" in result.output


async def test_cancel(stack: Stack) -> None:
    stack.sim.generation_seconds = 3.0  # the first job is generating while the CLI runs
    async with stack.service(max_in_flight=1):
        first = await stack.submit()
        await stack.wait_for(first["id"], "generating")
        waiting = await stack.submit()  # no slot: queued
        never_sent = await _run(stack, "cancel", waiting["id"])
        again = await _run(stack, "cancel", waiting["id"], "--json")
        shown = await _run(stack, "status", waiting["id"])
        accepted = await _run(stack, "cancel", first["id"])
        await stack.wait_for(first["id"], "succeeded")
        other = await stack.submit()
        await stack.wait_for(other["id"], "succeeded")
        finished = await _run(stack, "cancel", other["id"])
        unknown = await _run(stack, "cancel", "job_nope")
    assert never_sent.exit_code == 0, never_sent.output
    assert never_sent.stdout == f"job {waiting['id']} cancelled: PixVerse never accepted it\n"
    assert again.exit_code == 0
    job = json.loads(again.stdout)
    assert job["state"] == "rejected" and job["cancelled_at"] is not None
    assert "\ncancelled   " in shown.stdout
    assert accepted.exit_code == 0
    assert "PixVerse has it (generating) and makes the video anyway" in accepted.stdout
    assert (finished.exit_code, unknown.exit_code) == (1, 1)
    assert "already succeeded: nothing to cancel" in finished.output
    assert "no such job" in unknown.output
