"""Issue 15's "done when": the request bodies PixVerse's published clients and docs show
(:mod:`tests.contract.published`) replayed through pixhook's client and through ``/api``
against the simulator, each accepted and reaching its final state; a field pixhook does not
know reaches the simulator unchanged (``/_sim/jobs/{id}`` shows the body it received), is
stored with the job and reported as a warning, by ``/api``, the CLI and the Python submit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from click.testing import CliRunner

from service.cli import cli
from service.pixverse import REQUEST_TYPES, PixVerseClient
from service.simulator.config import DEFAULT_API_KEY
from tests.contract.conftest import Sim
from tests.contract.published import PUBLISHED, Published, issue_ids, resolve
from tests.core.conftest import postgres_schema, postgres_server  # noqa: F401
from tests.service.conftest import API_TOKEN, T2V, Stack, stack

__all__ = ["stack"]  # fixture

FINAL = {1: "succeeded", 7: "moderation_failed", 8: "failed"}
#: Fields no PixVerse document names: JSON scalars, arrays, objects and null, as given.
UNKNOWN: dict[str, Any] = {"future_switch": True, "future_list": [1, "two", None],
                           "future_object": {"nested": {"deep": [1.5, False]}},
                           "future_null": None, "future_text": "ünïcode ✓"}


def _expected_body(item: Published, body: dict[str, Any]) -> dict[str, Any]:
    """What PixVerse receives: the body, aliases under their documented name."""
    return REQUEST_TYPES[item.kind].normalise(body)


async def _final_status(client: PixVerseClient, kind: str, job_id: int,
                        timeout: float = 10.0) -> int:
    read = client.image_result if kind == "image_template" else client.video_result
    deadline = time.monotonic() + timeout
    while (status := (await read(job_id)).status) == 5:
        assert time.monotonic() < deadline, (kind, job_id)
        await asyncio.sleep(0.05)
    return status


@pytest.mark.parametrize("item", PUBLISHED, ids=[p.name for p in PUBLISHED])
async def test_published_bodies_through_the_client(shared_sim: Sim, item: Published) -> None:
    key = shared_sim.new_account()
    async with shared_sim.client(key) as client:
        async def finish(video_id: int) -> None:
            shared_sim.finish(video_id)

        body = resolve(item.body, await issue_ids(client, finish))
        request = REQUEST_TYPES[item.kind].from_params(body)
        submission = await client.submit(request)
        received = shared_sim.job(submission.job_id)
        assert received["kind"] == item.kind
        assert received["body"] == _expected_body(item, body)
        assert await _final_status(client, item.kind, submission.job_id) == item.final_status


async def test_published_bodies_through_the_api(stack: Stack) -> None:
    async with stack.service(), PixVerseClient(
            DEFAULT_API_KEY, base_url=stack.settings.pixverse_base_url) as client:
        async def finish(video_id: int) -> None:
            response = await stack.http.post(f"{stack.sim_url}/_sim/jobs/{video_id}/outcome",
                                             json={"status": 1})
            assert response.status_code == 200, response.text

        ids = await issue_ids(client, finish)
        created = []
        for item in PUBLISHED:
            body = resolve(item.body, ids)
            response = await stack.http.post(
                f"{stack.service_url}/api/jobs", headers=stack.auth,
                json={"kind": item.kind, "params": body})
            assert response.status_code == 201, (item.name, response.text)
            unknown = REQUEST_TYPES[item.kind].unknown_fields(body)
            warned = [w.split(":")[0] for w in response.json()["warnings"]]
            assert warned == [f"params.{name}" for name in unknown], item.name
            created.append((item, body, response.json()["id"]))
        for item, body, job_id in created:
            job = await stack.wait_for(job_id, FINAL[item.final_status], timeout=30)
            assert job["params"] == body, item.name  # stored as given, unknown fields too
            received = (await stack.http.get(
                f"{stack.sim_url}/_sim/jobs/{job['video_id_str']}")).json()
            assert received["body"] == _expected_body(item, body), item.name


@pytest.mark.parametrize("stack", ["sqlite", "postgres"], indirect=True)
async def test_an_unknown_field_reaches_pixverse_unchanged(stack: Stack) -> None:
    async with stack.service():
        response = await stack.http.post(
            f"{stack.service_url}/api/jobs", headers=stack.auth,
            json={"kind": "text_to_video", "params": {**T2V, **UNKNOWN},
                  "then": [{"kind": "upscale", "params": {"future_mode": "x4"}}]})
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["warnings"] == [
            *(f"params.{name}: not a field pixhook knows for text_to_video; it is sent to "
              "PixVerse as given" for name in UNKNOWN),
            "then[0].params.future_mode: not a field pixhook knows for upscale; it is sent to "
            "PixVerse as given"]
        job = await stack.wait_for(created["id"], "succeeded")
        assert job["params"] == {**T2V, **UNKNOWN}  # stored with the job
        received = (await stack.http.get(
            f"{stack.sim_url}/_sim/jobs/{job['video_id_str']}")).json()
        assert received["body"] == {**T2V, **UNKNOWN}  # what the simulator received
        child = await _child_of(stack, job["id"])
        step = await stack.wait_for(child["id"], "succeeded")
        step_received = (await stack.http.get(
            f"{stack.sim_url}/_sim/jobs/{step['video_id_str']}")).json()
        assert step_received["body"] == {"future_mode": "x4",
                                         "source_video_id": job["video_id"]}


async def _child_of(stack: Stack, parent_id: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        jobs = (await stack.http.get(f"{stack.service_url}/api/jobs", headers=stack.auth,
                                     params={"kind": "upscale"})).json()["jobs"]
        children = [j for j in jobs if j["parent_job_id"] == parent_id]
        if children:
            return dict(children[0])
        assert time.monotonic() < deadline, f"no follow-up of {parent_id}"
        await asyncio.sleep(0.05)


async def test_the_cli_sends_an_unknown_param_and_warns(stack: Stack) -> None:
    async with stack.service():
        env = {"PIXHOOK_URL": stack.service_url, "PIXHOOK_API_TOKEN": API_TOKEN,
               "PIXHOOK_CONFIG": "/nonexistent/pixhook.toml"}
        args = ["submit", "text_to_video", "--prompt", "a lantern", "--param", "model=v5",
                "--param", "duration=5", "--param", "quality=540p", "--param",
                "aspect_ratio=16:9", "--param", "motion_mode=normal", "--param",
                'water_mark={"corner": "br", "opacity": 0.5}']
        result = await asyncio.to_thread(CliRunner().invoke, cli, args, env=env)
        assert result.exit_code == 0, result.output
        job_id = result.stdout.strip()
        assert result.stderr.strip() == ("warning: params.water_mark: not a field pixhook "
                                         "knows for text_to_video; it is sent to PixVerse "
                                         "as given")
        job = await stack.wait_for(job_id, "succeeded")
        received = (await stack.http.get(
            f"{stack.sim_url}/_sim/jobs/{job['video_id_str']}")).json()
        assert received["body"]["water_mark"] == {"corner": "br", "opacity": 0.5}
        assert received["body"]["motion_mode"] == "normal"


async def test_strict_mode_refuses_what_only_weaker_sources_forbid(stack: Stack) -> None:
    params = {**T2V, "model": "v5", "motion_mode": "normal", "water_mark": False}
    async with stack.service(pixverse_strict=True):
        response = await stack.http.post(f"{stack.service_url}/api/jobs", headers=stack.auth,
                                         json={"kind": "text_to_video", "params": params})
        assert response.status_code == 422, response.text
        error = response.json()
        assert error["field"] == "params.motion_mode"
        assert "motion_mode:" in error["error"] and "water_mark:" in error["error"]
    assert (await stack.sim_stats()).get("submissions", 0) == 0
