"""``POST /api/jobs`` honours ``Idempotency-Key`` (Stripe's semantics), over real uvicorn: the
same key and body replay the original response, another body is a 422, concurrent requests
make one job, keys belong to the token that sent them and expire after
``PIXHOOK_IDEMPOTENCY_TTL``. ``pixhook submit`` sends a fresh key each time."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.cli import cli
from tests.api.support import AUTH, T2V, TOKEN, api_app
from tests.support.servers import running_server

BODY = {"kind": "text_to_video", "params": T2V, "labels": {"batch": "b1"}}


async def _post(http: httpx.AsyncClient, url: str, body: dict[str, Any], key: str | bytes,
                token: str = TOKEN) -> httpx.Response:
    return await http.post(f"{url}/api/jobs", json=body, headers={
        "Authorization": f"Bearer {token}", "Idempotency-Key": key})


async def _job_ids(http: httpx.AsyncClient, url: str, token: str = TOKEN) -> list[str]:
    listed = await http.get(f"{url}/api/jobs", params={"limit": 200},
                            headers={"Authorization": f"Bearer {token}"})
    assert listed.status_code == 200, listed.text
    return [job["id"] for job in listed.json()["jobs"]]


async def test_the_same_key_and_body_replay_the_original_response(database_url: str) -> None:
    async with api_app(database_url) as url, httpx.AsyncClient(timeout=30) as http:
        first = await _post(http, url, BODY, "order-1")
        assert first.status_code == 201, first.text
        assert "idempotent-replayed" not in first.headers
        # Key order and spacing do not make another request: the canonical JSON is compared.
        again = await http.post(f"{url}/api/jobs", headers={**AUTH, "Idempotency-Key": "order-1"},
                                content=json.dumps(dict(reversed(BODY.items())), indent=2))
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == first.json()
        assert await _job_ids(http, url) == [first.json()["id"]]
        other = await _post(http, url, BODY, "order-2")  # another key: another job
        assert other.status_code == 201 and other.json()["id"] != first.json()["id"]


async def test_the_same_key_with_another_body_is_a_422(database_url: str) -> None:
    async with api_app(database_url) as url, httpx.AsyncClient(timeout=30) as http:
        first = await _post(http, url, BODY, "order-1")
        changed = await _post(http, url, {**BODY, "labels": {"batch": "b2"}}, "order-1")
        assert changed.status_code == 422
        assert changed.json()["field"] == "Idempotency-Key"
        assert "different request" in changed.json()["error"]
        assert await _job_ids(http, url) == [first.json()["id"]]


async def test_twenty_concurrent_requests_with_one_key_make_one_job(database_url: str) -> None:
    async with api_app(database_url) as url, httpx.AsyncClient(timeout=30) as http:
        responses = await asyncio.gather(*(_post(http, url, BODY, "burst") for _ in range(20)))
        assert {r.status_code for r in responses} == {201}
        assert len({r.json()["id"] for r in responses}) == 1
        replayed = [r.headers.get("idempotent-replayed") for r in responses]
        assert replayed.count(None) == 1 and replayed.count("true") == 19
        assert len(await _job_ids(http, url)) == 1


async def test_a_key_belongs_to_the_token_that_sent_it(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'pixhook.db'}"
    async with api_app(database) as url, httpx.AsyncClient(timeout=30) as http:
        first = (await _post(http, url, BODY, "order-1")).json()["id"]
        again = await _post(http, url, BODY, "order-1")
        assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == first
    # The token rotated: the same key from the new token is another caller's key.
    async with api_app(database, api_token="rotated-token") as url, \
            httpx.AsyncClient(timeout=30) as http:
        second = await _post(http, url, BODY, "order-1", token="rotated-token")
        assert second.status_code == 201 and "idempotent-replayed" not in second.headers
        assert second.json()["id"] != first
        assert len(await _job_ids(http, url, "rotated-token")) == 2


async def test_an_expired_key_counts_as_absent(database_url: str) -> None:
    async with api_app(database_url, idempotency_ttl=0.5) as url, \
            httpx.AsyncClient(timeout=30) as http:
        first = (await _post(http, url, BODY, "order-1")).json()["id"]
        await asyncio.sleep(0.7)
        again = await _post(http, url, {**BODY, "labels": {"batch": "b2"}}, "order-1")
        assert again.status_code == 201 and "idempotent-replayed" not in again.headers
        assert again.json()["id"] != first
        replay = await _post(http, url, {**BODY, "labels": {"batch": "b2"}}, "order-1")
        assert replay.json()["id"] == again.json()["id"]
        assert replay.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("key", ["", "k" * 256, "café".encode(), b"tab\there"])
async def test_a_malformed_key_is_a_422(tmp_path: Path, key: str | bytes) -> None:
    async with api_app(f"sqlite:///{tmp_path / 'pixhook.db'}") as url, \
            httpx.AsyncClient(timeout=30) as http:
        response = await _post(http, url, BODY, key)
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "Idempotency-Key"
        assert await _job_ids(http, url) == []
        longest = await _post(http, url, BODY, "k" * 255)
        assert longest.status_code == 201


async def test_pixhook_submit_sends_a_fresh_key_each_time() -> None:
    seen: list[str | None] = []

    async def create(request: Request) -> JSONResponse:
        seen.append(request.headers.get("idempotency-key"))
        return JSONResponse({"id": f"job_{len(seen)}"}, status_code=201)

    app = Starlette(routes=[Route("/api/jobs", create, methods=["POST"])])
    async with running_server(app) as url:
        env = {"PIXHOOK_URL": url, "PIXHOOK_API_TOKEN": TOKEN,
               "PIXHOOK_CONFIG": "/nonexistent/pixhook.toml"}
        for _ in range(2):
            result = await asyncio.to_thread(
                CliRunner().invoke, cli, ["submit", "text_to_video", "--prompt", "p"], env=env)
            assert result.exit_code == 0, result.output
    assert len(seen) == 2 and seen[0] != seen[1]
    for key in seen:
        assert key is not None and uuid.UUID(key).version == 4
