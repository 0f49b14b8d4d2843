"""``GET /api/events`` over real uvicorn, on SQLite and PostgreSQL: JSON pages with filters,
server-sent events live from the log with ids, heartbeats and ``Last-Event-ID`` resume."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.api.support import AUTH, T2V, api_app
from tests.support.sse import messages

STREAM = {**AUTH, "Accept": "text/event-stream"}


async def _create(http: httpx.AsyncClient, url: str, **fields: Any) -> str:
    created = await http.post(f"{url}/api/jobs", headers=AUTH, json={
        "kind": "text_to_video", "params": T2V, **fields})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _cancel(http: httpx.AsyncClient, url: str, job_id: str) -> None:
    assert (await http.post(f"{url}/api/jobs/{job_id}/cancel", headers=AUTH)).status_code == 200


async def test_json_pages_and_filters(database_url: str) -> None:
    async with api_app(database_url) as url, httpx.AsyncClient(timeout=30) as http:
        red = await _create(http, url, labels={"team": "red"})
        blue = await _create(http, url, labels={"team": "blue"})
        await _cancel(http, url, red)  # queued -> rejected

        everything = (await http.get(f"{url}/api/events", headers=AUTH)).json()
        docs = everything["events"]
        assert [(d["subject"], d["data"]["job"]["state"]) for d in docs] == [
            (red, "queued"), (blue, "queued"), (red, "rejected")]
        assert everything["last_id"] == docs[-1]["sequence"]
        first = docs[0]
        assert first["specversion"] == "1.0" and first["dataversion"] == 1
        assert first["type"] == "io.pixhook.job.transition"
        assert first["id"] == f"transition:{first['data']['transition']['id']}"
        assert first["time"].endswith("Z") and first["source"] == "pixhook"

        async def subjects(**params: str) -> list[str]:
            answer = await http.get(f"{url}/api/events", headers=AUTH, params=params)
            assert answer.status_code == 200, answer.text
            return [d["subject"] for d in answer.json()["events"]]

        assert await subjects(job=red) == [red, red]
        assert await subjects(label="team=blue") == [blue]
        assert await subjects(state="rejected") == [red]
        assert await subjects(kind="image_to_video") == []
        assert await subjects(type="task_run") == []
        assert await subjects(after=str(docs[0]["sequence"])) == [blue, red]
        page = (await http.get(f"{url}/api/events", headers=AUTH,
                               params={"limit": "1", "label": "team=blue"})).json()
        assert page == {"events": [], "last_id": docs[0]["sequence"]}


@pytest.mark.parametrize(("params", "headers", "field"), [
    ({"after": "-1"}, {}, "after"),
    ({"after": "x"}, {}, "after"),
    ({}, {"Last-Event-ID": "1.5"}, "Last-Event-ID"),
    ({"state": "nope"}, {}, "state"),
    ({"type": "job"}, {}, "type"),
    ({"label": "team"}, {}, "label"),
    ({"job": "a\x00b"}, {}, "job"),
    ({"limit": "0"}, {}, "limit"),
])
async def test_bad_queries_name_the_field(tmp_path: Any, params: dict[str, str],
                                          headers: dict[str, str], field: str) -> None:
    async with api_app(f"sqlite:///{tmp_path / 'pixhook.db'}") as url, \
            httpx.AsyncClient(timeout=30) as http:
        answer = await http.get(f"{url}/api/events", headers={**AUTH, **headers},
                                params=params)
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == field
        assert (await http.get(f"{url}/api/events")).status_code == 401


async def test_stream_is_live_resumable_and_beats(database_url: str) -> None:
    async with api_app(database_url, events_poll_interval=0.05, events_heartbeat=0.3) as url, \
            httpx.AsyncClient(timeout=30) as http:
        old = await _create(http, url)
        received: list[dict[str, Any]] = []
        comments: list[str] = []
        async with http.stream("GET", f"{url}/api/events", headers=STREAM) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = messages(response)
            new = await _create(http, url)  # only events after the stream began
            await _cancel(http, url, new)
            async for message in stream:
                if "comment" in message:
                    comments.append(message["comment"])
                    if len(received) == 2:
                        break  # a heartbeat after the two events: quiet and alive
                elif "data" in message:
                    received.append(message)
        assert [(m["data"]["subject"], m["data"]["data"]["job"]["state"]) for m in received] \
            == [(new, "queued"), (new, "rejected")]
        assert all(m["id"] == str(m["data"]["sequence"]) for m in received)
        assert all(m["event"] == "io.pixhook.job.transition" for m in received)
        assert "heartbeat" in comments
        assert old not in {m["data"]["subject"] for m in received}

        # Reconnecting with Last-Event-ID: exactly what came after it, from the log.
        resumed: list[dict[str, Any]] = []
        headers = {**STREAM, "Last-Event-ID": received[0]["id"]}
        async with http.stream("GET", f"{url}/api/events", headers=headers,
                               params={"after": "0"}) as response:
            async for message in messages(response):
                if "data" in message:
                    resumed.append(message)
                    break
        assert [m["id"] for m in resumed] == [received[1]["id"]]


async def test_stream_ends_and_a_reconnect_misses_nothing(tmp_path: Any) -> None:
    """Streams end on their own (a restart is not held up); the client resumes after the last
    id it got and finds the events committed in between."""
    from service import event_stream

    before = event_stream.STREAM_SECONDS
    event_stream.STREAM_SECONDS = 0.3  # read when the app is built
    try:
        async with api_app(f"sqlite:///{tmp_path / 'pixhook.db'}",
                           events_poll_interval=0.05) as url, \
                httpx.AsyncClient(timeout=30) as http:
            first = await _create(http, url)
            async with http.stream("GET", f"{url}/api/events", headers=STREAM,
                                   params={"after": "0"}) as response:
                got = [m async for m in messages(response) if "data" in m]
            assert [m["data"]["subject"] for m in got] == [first]
            second = await _create(http, url)
            headers = {**STREAM, "Last-Event-ID": got[-1]["id"]}
            async with http.stream("GET", f"{url}/api/events", headers=headers) as response:
                again = [m async for m in messages(response) if "data" in m]
            assert [m["data"]["subject"] for m in again] == [second]
    finally:
        event_stream.STREAM_SECONDS = before


async def test_a_stream_sees_another_replicas_writes(database_url: str) -> None:
    """Two apps on one database (replicas): a stream on one sees jobs made through the other.
    (On SQLite, two processes sharing the file.)"""
    async with api_app(database_url, events_poll_interval=0.05) as one, \
            api_app(database_url) as two, httpx.AsyncClient(timeout=30) as http:
        async with http.stream("GET", f"{one}/api/events", headers=STREAM) as response:
            stream = messages(response)
            job = await _create(http, two)
            message = await asyncio.wait_for(
                anext(m async for m in stream if "data" in m), 10)
        assert message["data"]["subject"] == job
