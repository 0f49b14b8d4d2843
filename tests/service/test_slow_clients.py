"""Slow bodies cannot starve the receiver: a real ``pixhook web`` process (uvicorn) with fewer
file descriptors than there are stalled clients still takes a valid webhook within seconds,
because each stalled body is given up after ``PIXHOOK_BODY_TIMEOUT`` (408, connection closed).
Loopback only; about 10 s."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from service.pixverse import signature
from service.serving import UNLIMITED_OPEN_FILES_TARGET
from tests.service.conftest import API_TOKEN
from tests.support.processes import pixhook_env, processes  # noqa: F401 - a fixture
from tests.support.servers import free_port

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="uses sh's ulimit and /proc")

SECRET = "slow-clients-secret"
#: Stalled clients, and the web process's open-file limit (hard, so it cannot be raised):
#: fewer descriptors than clients, as on the machine where they held every one for 40 s.
SLOW_CLIENTS = 300
OPEN_FILES = 256
BODY_TIMEOUT = 1.0


@contextlib.asynccontextmanager
async def _pixhook_web(tmp_path: Path, processes: list[subprocess.Popen[bytes]],  # noqa: F811
                       ulimit: str) -> AsyncIterator[tuple[str, int]]:
    """``pixhook web`` under ``sh -c 'ulimit ULIMIT; exec ...'``; yields its URL and pid."""
    port = free_port()
    env = pixhook_env(database_url=f"sqlite:///{tmp_path / 'pixhook.db'}",
                      sim_url="http://127.0.0.1:9", webhook_secret=SECRET, tmp_path=tmp_path,
                      PIXHOOK_BODY_TIMEOUT=str(BODY_TIMEOUT), PIXHOOK_POLL_MODE="off",
                      PIXHOOK_LOG_LEVEL="warning")
    argv = ["sh", "-c", f'ulimit {ulimit} && exec "$0" "$@"', sys.executable, "-m", "service",
            "web", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(argv, cwd=tmp_path, env=env)
    processes.append(process)
    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(timeout=5) as http:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{base}/healthz")).status_code == 200:
                    break
            assert process.poll() is None, "pixhook web exited"
            assert time.monotonic() < deadline, "pixhook web did not start"
            await asyncio.sleep(0.1)
    yield base, process.pid


#: Where the stalled clients send their bodies: the receiver, and /api (a valid token).
STALLED_REQUESTS = (
    b"POST /webhooks/pixverse HTTP/1.1\r\nWebhook-Timestamp: 1\r\nWebhook-Nonce: n\r\n"
    b"Webhook-Signature: s\r\n",
    b"POST /api/jobs HTTP/1.1\r\nAuthorization: Bearer " + API_TOKEN.encode() + b"\r\n",
)


async def _stall(port: int, writers: list[asyncio.StreamWriter],
                 request: bytes) -> asyncio.StreamReader:
    """Send ``request``'s headers announcing a 1 KiB body and 20 bytes of it, then nothing."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writers.append(writer)
    writer.write(request + b"Host: test\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 1024\r\n\r\n" + b'{"kind": "x", "id": ')
    await writer.drain()
    return reader


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """What the server sent before closing (a reset counts as closed with nothing), and when
    it closed (``time.monotonic()``)."""
    try:
        answer = await reader.read()
    except ConnectionError:
        answer = b""
    return answer, time.monotonic()


async def _deliver(base: str, *, limit: float) -> float:
    """Send a signed webhook as PixVerse does, a new attempt (fresh nonce) after each failed
    one, here without PixVerse's pauses; the seconds until it was taken (``200 ok``).

    While every descriptor is held, uvicorn's event loop (uvloop, libuv) accepts and at once
    closes new connections to shed them, so attempts fail fast until descriptors are freed:
    before the body deadline existed that was never, and PixVerse would have given up.
    """
    body = json.dumps({"id": "4242", "status": 1, "url": "", "size": 0}).encode()
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            headers = {**signature.sign_headers(SECRET, body), "Content-Type": "application/json"}
            with contextlib.suppress(httpx.TransportError):
                response = await http.post(f"{base}/webhooks/pixverse", content=body,
                                           headers=headers)
                if (response.status_code, response.text) == (200, "ok"):  # kept as an orphan
                    return time.monotonic() - started
            assert time.monotonic() - started < limit, "the webhook was starved"
            await asyncio.sleep(0.05)


async def test_stalled_bodies_do_not_starve_a_valid_webhook(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:  # noqa: F811
    async with _pixhook_web(tmp_path, processes, f"-n {OPEN_FILES}") as (base, _):
        port = int(base.rsplit(":", 1)[1])
        writers: list[asyncio.StreamWriter] = []
        try:
            first_stalled = time.monotonic()
            readers = [await _stall(port, writers, STALLED_REQUESTS[i % 2])
                       for i in range(SLOW_CLIENTS)]

            waited = await _deliver(base, limit=BODY_TIMEOUT + 3)
            assert waited < BODY_TIMEOUT + 3, waited

            # Every stalled client is answered 408 (or just closed) once its deadline passes:
            # those the process could not accept at first get theirs a little later.
            ends = await asyncio.wait_for(asyncio.gather(*map(_answer, readers)),
                                          timeout=3 * BODY_TIMEOUT + 5)
        finally:
            for writer in writers:
                writer.close()
    answers = [answer for answer, _ in ends]
    timed_out = [a for a in answers if a.startswith(b"HTTP/1.1 408 ")]
    assert all(a == b"" or a.startswith(b"HTTP/1.1 408 ") for a in answers), {
        a[:40] for a in answers}
    assert len(timed_out) > OPEN_FILES // 2, len(timed_out)
    for kind in (b"text/plain", b"application/json"):  # the receiver's and /api's
        assert any(kind in answer for answer in timed_out), kind
    assert all(b"connection: close" in a.lower() for a in timed_out)
    # Nobody got a 408 before its deadline (each began after the first stalled client did).
    first_408 = min(at for answer, at in ends if answer.startswith(b"HTTP/1.1 408 "))
    assert first_408 - first_stalled >= BODY_TIMEOUT


async def test_pixhook_web_raises_its_soft_open_file_limit_to_the_hard_one(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:  # noqa: F811
    hard = subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True,
                          check=True).stdout.strip()
    if hard != "unlimited" and int(hard) <= OPEN_FILES:
        pytest.skip(f"the hard limit here is {hard}")
    async with _pixhook_web(tmp_path, processes, f"-Sn {OPEN_FILES}") as (_, pid):
        limits = Path(f"/proc/{pid}/limits").read_text()
    [line] = [line for line in limits.splitlines() if line.startswith("Max open files")]
    soft, hard_there = line.split()[3:5]
    assert hard_there == hard, line
    assert soft == (str(UNLIMITED_OPEN_FILES_TARGET) if hard == "unlimited" else hard), line
