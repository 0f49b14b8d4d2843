"""The ``pixhook`` CLI's promises (issue 17): distinct exit codes (0, 1, 2, 3, 130 with "the job
goes on"), colour only on a terminal and never with NO_COLOR, ``--json`` on every read command,
errors that name the fix, ``submit --wait`` over the whole chain and its handlers, and
``reconcile`` asking the service. Against a running service and the simulator."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.applications import Starlette

from service.cli import cli
from service.lifecycle import JobState
from tests.service.conftest import Stack
from tests.service.test_cli import T2V_ARGS, _env, _run
from tests.support.processes import REPO
from tests.support.servers import running_server

ANSI = "\x1b["
CHAIN = '{"kind": "sound_effect", "params": {"sound_effect_content": "wind"}}'


def _process_env(stack: Stack, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), **_env(stack, **extra)}
    if "NO_COLOR" not in extra:
        env.pop("NO_COLOR", None)
    return env


async def _in_pty(stack: Stack, *args: str, **env: str) -> tuple[int, str]:
    """Run ``pixhook ARGS`` with its stdout on a pseudo-terminal; its code and output."""
    leader, follower = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", *args, cwd=REPO, env=_process_env(stack, **env),
        stdout=follower, stderr=asyncio.subprocess.DEVNULL)
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = await asyncio.to_thread(os.read, leader, 4096)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return await asyncio.wait_for(process.wait(), 30), b"".join(chunks).decode()


async def _piped(stack: Stack, *args: str, **env: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", *args, cwd=REPO, env=_process_env(stack, **env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# -- exit codes ---------------------------------------------------------------------------


async def test_wait_handlers_follows_the_chain_prints_each_file_and_exits_0(
        stack: Stack) -> None:
    async with stack.service():
        result = await _run(stack, "submit", "text_to_video", "--prompt", "a lantern",
                            *T2V_ARGS, "--then", CHAIN, "--wait=handlers")
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        first, second = [line.split()[0] for line in lines if line.startswith("job_")]
        assert first != second
        for job_id in (first, second):
            job = await stack.job(job_id)  # the whole chain finished, with its download
            assert job["state"] == "succeeded" and job["media_url"]
            # The link is signed with the time it was made (itsdangerous: payload.time.sig):
            # the one printed and the one read now differ once a second has turned.
            payload = job["media_url"].rsplit(".", 2)[0]
            assert any(line.startswith(f"  video  {payload}.") for line in lines), lines
            assert all(t["state"] == "succeeded" for t in job["tasks"])
        assert (await stack.job(second))["parent_job_id"] == first


async def test_wait_exits_1_when_the_download_is_dead(stack: Stack) -> None:
    # The simulator serves media on loopback; refusing private addresses kills the download.
    async with stack.service(download_allow_private=False, task_max_attempts=1):
        result = await _run(stack, "submit", "text_to_video", "--prompt", "x", *T2V_ARGS,
                            "--wait")
    assert result.exit_code == 1, result.output
    assert "download dead" in result.stdout and "pixhook tasks retry" in result.stdout


async def test_wait_that_times_out_exits_3_and_the_job_goes_on(stack: Stack) -> None:
    stack.sim.generation_seconds = 30.0
    async with stack.service():
        result = await _run(stack, "submit", "text_to_video", "--prompt", "slow", *T2V_ARGS,
                            "--wait", "--timeout", "1")
    assert result.exit_code == 3, result.output
    assert "timed out after 1 s" in result.stderr and "it goes on" in result.stderr


async def test_ctrl_c_during_wait_exits_130_and_says_the_job_goes_on(stack: Stack) -> None:
    stack.sim.generation_seconds = 30.0
    async with stack.service():
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "service", "submit", "text_to_video", "--prompt", "slow",
            *T2V_ARGS, "--wait", cwd=REPO, env=_process_env(stack),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert process.stderr is not None
        try:
            # Interrupt once it is waiting: its progress line names the job.
            line = (await asyncio.wait_for(process.stderr.readline(), 30)).decode()
            assert line.startswith("job job_"), line
            process.send_signal(signal.SIGINT)
            code = await asyncio.wait_for(process.wait(), 30)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        err = line + (await process.stderr.read()).decode()
        job_id = line.split()[1]
        assert (await stack.job(job_id))["cancelled_at"] is None
    assert code == 130, err
    assert f"job {job_id} goes on" in err and "Aborted!" not in err


@pytest.mark.parametrize(("args", "env", "message"), [
    # A URL without a scheme: the fix, not httpx's "(UnsupportedProtocol)".
    (["jobs"], {"PIXHOOK_URL": "127.0.0.1:8000"}, "add it, e.g. PIXHOOK_URL=http://127.0.0.1:8000"),
    (["jobs"], {"PIXHOOK_URL": "localhost:8000"}, "does not start with http:// or https://"),
    (["jobs", "--state", "done"], {}, "is not one of 'queued', 'submitting', 'generating'"),
    (["tasks", "retry"], {}, "or pass --all-dead"),
])
async def test_usage_and_connection_errors_exit_2_and_name_the_fix(
        stack: Stack, args: list[str], env: dict[str, str], message: str) -> None:
    async with stack.service():
        result = await _run(stack, *args, **env)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


async def test_a_port_out_of_range_is_refused_not_wrapped(stack: Stack) -> None:
    # uvicorn would bind 99999 % 65536 while the simulator's banner says 99999.
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "sim", "--port", "99999", cwd=REPO,
        env=_process_env(stack), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(process.communicate(), 20)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 2
    assert "99999 is not in the range 1<=x<=65535" in err.decode()


async def test_a_server_that_is_not_pixhook_is_named_not_not_found(stack: Stack) -> None:
    async with running_server(Starlette()) as other:  # answers 404 "Not Found" to everything
        result = await _run(stack, "jobs", PIXHOOK_URL=other)
    assert result.exit_code == 2, result.output
    assert "error: Not Found" not in result.output
    assert "not as pixhook's /api does: is PIXHOOK_URL the address" in result.output


def test_exit_codes_are_documented() -> None:
    readme = (REPO / "README.md").read_text()
    for row in ("| 0 |", "| 1 |", "| 2 |", "| 3 |", "| 130 |"):
        assert row in readme
    helped = CliRunner().invoke(cli, ["submit", "--help"]).output
    assert "3 if --timeout ran out, 130 on" in helped


# -- colour -------------------------------------------------------------------------------


async def test_colour_on_a_terminal_never_with_no_color_or_piped(stack: Stack) -> None:
    async with stack.service():
        job = await stack.submit()
        await stack.wait_for(job["id"], "succeeded")
        coloured = await _in_pty(stack, "jobs")
        no_color = await _in_pty(stack, "jobs", NO_COLOR="1")
        piped = await _piped(stack, "jobs")
    assert coloured[0] == no_color[0] == piped[0] == 0
    assert job["id"] in coloured[1] and ANSI in coloured[1]
    assert job["id"] in no_color[1] and ANSI not in no_color[1]
    assert job["id"] in piped[1] and ANSI not in piped[1] + piped[2]


# -- --json and the new /api actions -------------------------------------------------------


async def test_every_read_command_has_json(stack: Stack) -> None:
    async with stack.service(download_allow_private=False, task_max_attempts=1):
        job, other = await stack.submit(), await stack.submit()
        dead = [*await stack.wait_for_tasks(job["id"], "dead"),
                *await stack.wait_for_tasks(other["id"], "dead")]
        outputs: dict[str, Any] = {}
        for name, args in {
            "status": ["status", job["id"]], "jobs": ["jobs"], "events": ["events", job["id"]],
            "tasks": ["tasks"], "config": ["config"], "balance": ["balance"],
            "reconcile": ["reconcile"], "retry": ["tasks", "retry", str(dead[0]["id"])],
            "replay": ["tasks", "replay", str(dead[-1]["id"])],
        }.items():
            result = await _run(stack, *args, "--json")
            assert result.exit_code == 0, (name, result.output)
            outputs[name] = json.loads(result.stdout)
    assert outputs["retry"] == {"retried": 1, "tasks": [outputs["retry"]["tasks"][0]]}
    assert outputs["reconcile"]["polled"] >= 0
    assert outputs["status"]["id"] == job["id"]


async def test_search_bulk_retry_replay_and_tasks_newest_first(stack: Stack) -> None:
    async with stack.service(download_allow_private=False, task_max_attempts=1):
        jobs = [await stack.submit(params={**_t2v(), "prompt": f"harbour {n} " + "x" * 60})
                for n in range(2)]
        for job in jobs:
            await stack.wait_for_tasks(job["id"], "dead")
        found = json.loads((await _run(stack, "jobs", "-q", "harbour 1", "--json")).stdout)
        table = (await _run(stack, "jobs", "--search", "harbour")).stdout
        listed = json.loads((await _run(stack, "tasks", "--json")).stdout)
        revived = await _run(stack, "tasks", "retry", "--all-dead", "--handler", "download")
        await stack.wait_for_tasks(jobs[0]["id"], "dead")
        await stack.wait_for_tasks(jobs[1]["id"], "dead")
        task_id = listed[0]["id"]
        replayed = await _run(stack, "tasks", "replay", str(task_id))
        runs = await stack.http.get(f"{stack.service_url}/api/tasks/{task_id}",
                                    headers=stack.auth)
    assert [j["id"] for j in found] == [jobs[1]["id"]]
    assert "harbour 0 xxxx" in table and "\u2026" in table  # cut prompts end in an ellipsis
    ids = [t["id"] for t in listed]
    assert ids == sorted(ids, reverse=True)
    assert revived.exit_code == 0 and "retried 2 dead task(s)" in revived.stdout
    assert replayed.exit_code == 0 and "runs again" in replayed.stdout
    assert len(runs.json()["runs"]) >= 2


def _t2v() -> dict[str, Any]:
    from tests.service.conftest import T2V

    return dict(T2V)


# -- reconcile ----------------------------------------------------------------------------


async def test_reconcile_asks_the_service_not_a_local_database(stack: Stack,
                                                               tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "p.db"
    async with stack.service():
        plain = await _run(stack, "reconcile", PIXHOOK_DATABASE_URL=f"sqlite:///{missing}")
        once = await _run(stack, "reconcile", "--once", "--json",
                          PIXHOOK_DATABASE_URL=f"sqlite:///{missing}")
    assert plain.exit_code == 0, plain.output
    assert plain.stdout == "polled 0 overdue job(s)\n"
    assert once.exit_code == 0 and json.loads(once.stdout) == {"polled": 0}
    assert not missing.parent.exists()


def test_submit_help_example_keeps_each_option_whole() -> None:
    helped = CliRunner().invoke(cli, ["submit", "--help"], terminal_width=80).output
    assert '    --param model=v6 --param duration=5 --param quality=540p \\' in helped
    assert "--wait=handlers" in helped


def test_job_states_are_the_lifecycle_vocabulary() -> None:
    result = CliRunner().invoke(cli, ["jobs", "--state", "done"])
    assert result.exit_code == 2
    assert all(state.value in result.output for state in JobState)


@pytest.mark.parametrize("stack", ["sqlite", "postgres"], indirect=True)
async def test_tasks_lists_newest_first_on_each_database(stack: Stack) -> None:
    async with stack.service():
        for _ in range(3):
            job = await stack.submit()
            await stack.wait_for_tasks(job["id"], "succeeded")
        listed = json.loads((await _run(stack, "tasks", "--json")).stdout)
        oldest_first = await stack.tasks()
    ids = [t["id"] for t in listed]
    assert len(ids) >= 3 and ids == sorted(ids, reverse=True)
    assert [t["id"] for t in oldest_first] == sorted(ids)  # /api's default is unchanged
