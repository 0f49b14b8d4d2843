"""Bad input at the webhook receiver gets its documented answer and changes nothing."""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

import pytest

from service.pixverse import signature
from tests.service.conftest import Stack

Case = tuple[bytes, dict[str, str]]


def _signed(secret: str, payload: dict[str, Any] | bytes, **kw: Any) -> Case:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = signature.sign_headers(secret, body, **kw)
    return body, {**headers, "Content-Type": "application/json"}


async def _snapshot(stack: Stack, job_id: str) -> tuple[Any, ...]:
    job = await stack.job(job_id)
    return job["state"], len(job["transitions"]), job["updated_at"], job["last_event_at"]


@pytest.fixture
async def finished(stack: Stack):
    async with stack.service():
        created = await stack.submit()
        await stack.wait_for(created["id"], "succeeded")
        # Handlers (the download) update the job too; let them finish before snapshots.
        await stack.wait_for_tasks(created["id"], "succeeded")
        yield stack, await stack.job(created["id"])


async def _post(stack: Stack, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    response = await stack.http.post(f"{stack.service_url}/webhooks/pixverse", content=body,
                                     headers=headers)
    return response.status_code, response.text


async def _count_deliveries(stack: Stack) -> int:
    path = stack.settings.database_url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM webhook_deliveries").fetchone()[0])


async def test_each_bad_input_gets_its_answer_and_changes_nothing(finished) -> None:
    stack, job = finished
    secret = stack.settings.pixverse_webhook_secret
    event = {"id": str(job["video_id"]), "status": 8, "url": "", "size": 0}
    good_body, good_headers = _signed(secret, event)
    cases: dict[str, tuple[bytes, dict[str, str], int]] = {
        "bad signature": (*_signed("not-the-secret", event), 401),
        "missing signature": (good_body, {"Content-Type": "application/json"}, 401),
        "stale timestamp": (*_signed(secret, event, timestamp=int(time.time()) - 400), 401),
        "future timestamp": (*_signed(secret, event, timestamp=int(time.time()) + 400), 401),
        "malformed json": (b'{"id": "1", "status": ', good_headers, 400),
        # Not signable at all, so fresh valid headers are the best a sender could do.
        "json array": (b"[1, 2]", good_headers, 400),
        "nested value": (b'{"id": "1", "status": {"x": 1}}', good_headers, 400),
        # A validly signed event is never refused (test_unknown_events.py): PixVerse would
        # give it up after its retries.
        "wrong content type": (good_body, {**good_headers, "Content-Type": "text/plain"}, 415),
        "huge body": (b"{" + b" " * 70_000 + b"}", good_headers, 413),
    }
    before = await _snapshot(stack, job["id"])
    deliveries_before = await _count_deliveries(stack)
    for name, (body, headers, expected) in cases.items():
        status, text = await _post(stack, body, headers)
        assert status == expected, (name, status, text)
        assert status < 500
    assert await _snapshot(stack, job["id"]) == before
    assert await _count_deliveries(stack) == deliveries_before


async def test_replayed_nonce_is_refused_and_writes_nothing(finished) -> None:
    stack, job = finished
    body, headers = _signed(stack.settings.pixverse_webhook_secret,
                            {"id": str(job["video_id"]), "status": 1, "url": "", "size": 0})
    assert await _post(stack, body, headers) == (200, "ok")  # a duplicate of the real event
    before = await _snapshot(stack, job["id"])
    deliveries = await _count_deliveries(stack)
    status, _ = await _post(stack, body, headers)
    assert status == 409
    assert await _snapshot(stack, job["id"]) == before
    assert await _count_deliveries(stack) == deliveries


async def test_unknown_video_is_an_orphan_answered_ok(finished) -> None:
    stack, job = finished
    body, headers = _signed(stack.settings.pixverse_webhook_secret,
                            {"id": "123456789012345678", "status": 1, "url": "", "size": 0})
    before = await _snapshot(stack, job["id"])
    deliveries = await _count_deliveries(stack)
    assert await _post(stack, body, headers) == (200, "ok")
    assert await _snapshot(stack, job["id"]) == before
    assert await _count_deliveries(stack) == deliveries + 1


async def test_rotation_accepts_the_previous_secret(stack: Stack) -> None:
    current = stack.settings.pixverse_webhook_secret
    async with stack.service(pixverse_webhook_secret="new-secret",
                             pixverse_webhook_secret_previous=current):
        created = await stack.submit()  # the simulator still signs with the old secret
        await stack.wait_for(created["id"], "succeeded")
    assert (await stack.sim_stats())["status_calls"] == 0


async def test_no_secret_configured_is_503_not_500(stack: Stack) -> None:
    async with stack.service(pixverse_webhook_secret=""):
        body, headers = _signed("x", {"id": "1", "status": 1})
        status, text = await _post(stack, body, headers)
    assert status == 503 and "PIXVERSE_WEBHOOK_SECRET" in text
