"""The webhook receiver at its edges, over real uvicorn: junk that used to be answered 500 with
a traceback, a sender that hangs up mid-body, and a body that never finishes arriving."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from service.app import create_app
from service.lifecycle import JobState, TransitionSource
from service.pixverse import signature
from service.settings import Settings
from service.store import SQLiteStore
from tests.support.servers import running_server

SECRET = "edge-test-secret"
VIDEO_ID = 384920175633408123
#: Short, so a stalled body is given up quickly here (the default is 10 s).
BODY_TIMEOUT = 1.0


class Records(logging.Handler):
    """Every record of the loggers it is attached to, at every level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def of(self, name: str) -> list[logging.LogRecord]:
        return [record for record in self.records if record.name == name]

    @property
    def tracebacks(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.exc_info or "Exception in ASGI" in r.getMessage()]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """The pixhook app (web role) on SQLite with one generating job; yields a client and the
    job id."""
    db = tmp_path / "pixhook.db"
    async with SQLiteStore(db) as store:
        job = await store.create_job(kind="text_to_video", params={"prompt": "p"})
        await store.update_job(job.id, video_id=VIDEO_ID)
        await store.apply_transition(job.id, JobState.GENERATING, source=TransitionSource.SUBMIT)
    settings = Settings(database_url=f"sqlite:///{db}", pixverse_webhook_secret=SECRET,
                        api_token="t", handlers=(), poll_mode="off",
                        pixverse_base_url="http://127.0.0.1:9/openapi/v2",
                        body_timeout=BODY_TIMEOUT)
    async with running_server(create_app(settings, run_background=False)) as url, \
            httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client, job.id


@pytest.fixture
def logs() -> Iterator[Records]:
    """What the receiver and uvicorn log (attached after uvicorn configured its loggers)."""
    handler = Records()
    receiver = logging.getLogger("service.receiver")
    level = receiver.level
    receiver.setLevel(logging.DEBUG)
    for name in ("service", "uvicorn.error"):
        logging.getLogger(name).addHandler(handler)
    yield handler
    for name in ("service", "uvicorn.error"):
        logging.getLogger(name).removeHandler(handler)
    receiver.setLevel(level)


async def _webhooks_total(client: httpx.AsyncClient, outcome: str) -> float:
    text = (await client.get("/metrics")).text
    match = re.search(rf'^pixhook_webhooks_total{{outcome="{outcome}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def _headers(**overrides: str) -> dict[str, str]:
    return {"Webhook-Timestamp": str(int(time.time())), "Webhook-Nonce": "n" * 32,
            "Webhook-Signature": "x" * 44, "Content-Type": "application/json", **overrides}


EVENT = f'{{"id":"{VIDEO_ID}","status":1,"url":"","size":0}}'.encode()


@pytest.mark.parametrize(("body", "overrides", "status", "outcome"), [
    # int("9" * 400) compared with the clock's float: OverflowError.
    (EVENT, {"Webhook-Timestamp": "9" * 400}, 401, "bad_signature"),
    # json.loads: RecursionError (both under the 64 KiB cap).
    (b"[" * 20_000 + b"]" * 20_000, {}, 400, "malformed"),
    (b'{"":' * 12_000 + b"1" + b"}" * 12_000, {}, 400, "malformed"),
    # A lone surrogate cannot be UTF-8 encoded for the signed string: UnicodeEncodeError.
    (b'{"id":"1","status":1,"url":"\\ud800"}', {}, 401, "bad_signature"),
], ids=["timestamp-400-digits", "array-20000-deep", "object-12000-deep", "lone-surrogate"])
async def test_junk_that_was_a_500_is_a_4xx_counted_in_one_line_without_traceback(
        service: tuple[httpx.AsyncClient, str], logs: Records, body: bytes,
        overrides: dict[str, str], status: int, outcome: str) -> None:
    client, job_id = service
    before = await _webhooks_total(client, outcome)
    response = await client.post("/webhooks/pixverse", content=body,
                                 headers=_headers(**overrides))
    assert response.status_code == status, response.text
    assert await _webhooks_total(client, outcome) == before + 1
    [line] = logs.of("service.receiver")
    assert f"webhook refused: {outcome}" in line.getMessage()
    assert not logs.tracebacks
    assert (await client.get(f"/api/jobs/{job_id}", headers={"Authorization": "Bearer t"})
            ).json()["state"] == "generating"


async def test_a_signed_event_with_a_lone_surrogate_is_applied(
        service: tuple[httpx.AsyncClient, str]) -> None:
    client, job_id = service
    body = f'{{"id":"{VIDEO_ID}","status":1,"url":"https://x/\\ud800","size":0}}'.encode()
    headers = {**signature.sign_headers(SECRET, body), "Content-Type": "application/json"}
    response = await client.post("/webhooks/pixverse", content=body, headers=headers)
    assert (response.status_code, response.text) == (200, "ok")
    job = (await client.get(f"/api/jobs/{job_id}", headers={"Authorization": "Bearer t"})).json()
    assert job["state"] == "succeeded"


async def _open(client: httpx.AsyncClient) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = str(client.base_url).removeprefix("http://").rstrip("/").split(":")
    return await asyncio.open_connection(host, int(port))


def _partial_request(declared: int = 200, path: str = "/webhooks/pixverse") -> bytes:
    """Headers announcing ``declared`` bytes, and the first few of them only."""
    return (f"POST {path} HTTP/1.1\r\nHost: test\r\n".encode()
            + b"Content-Type: application/json\r\nAuthorization: Bearer t\r\n"
            + f"Content-Length: {declared}\r\n".encode()
            + b"".join(f"{name}: {value}\r\n".encode() for name, value in _headers().items()
                       if name != "Content-Type")
            + b"\r\n" + b'{"id": "1", ')


async def _until(check: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def test_a_sender_hanging_up_mid_body_is_one_debug_line(
        service: tuple[httpx.AsyncClient, str], logs: Records) -> None:
    client, _ = service
    reader, writer = await _open(client)
    writer.write(_partial_request())
    await writer.drain()
    await asyncio.sleep(0.1)  # the receiver is reading the body now
    writer.close()
    await writer.wait_closed()

    async def counted() -> bool:
        return await _webhooks_total(client, "client_disconnected") == 1

    await _until(counted)
    [line] = logs.of("service.receiver")
    assert line.levelno == logging.DEBUG and "hung up mid-body" in line.getMessage()
    assert not logs.tracebacks and not logs.of("uvicorn.error")


async def test_a_body_that_stalls_gets_408_and_the_connection_closes(
        service: tuple[httpx.AsyncClient, str], logs: Records) -> None:
    client, _ = service
    reader, writer = await _open(client)
    started = time.monotonic()
    writer.write(_partial_request())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=BODY_TIMEOUT + 5)  # until EOF
    elapsed = time.monotonic() - started
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer.lower()
    assert BODY_TIMEOUT <= elapsed < BODY_TIMEOUT + 2, elapsed
    assert await _webhooks_total(client, "body_timeout") == 1
    [line] = logs.of("service.receiver")
    assert "webhook refused: body_timeout" in line.getMessage()
    assert not logs.tracebacks


async def test_an_api_body_that_stalls_gets_408_and_the_connection_closes(
        service: tuple[httpx.AsyncClient, str], logs: Records) -> None:
    client, _ = service
    reader, writer = await _open(client)
    started = time.monotonic()
    writer.write(_partial_request(path="/api/jobs"))
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=BODY_TIMEOUT + 5)  # until EOF
    elapsed = time.monotonic() - started
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert b"connection: close" in answer.lower() and b'"field":"body"' in answer
    assert BODY_TIMEOUT <= elapsed < BODY_TIMEOUT + 2, elapsed
    assert not logs.tracebacks
