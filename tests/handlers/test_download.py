"""The download handler, against the PixVerse simulator and small apps on real uvicorn servers:
the file and its record, flat memory, the URL checks, HTTP errors, and nothing left behind."""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from handlers.download import (
    SWEEP_GRACE_SECONDS,
    DownloadError,
    DownloadHandler,
    host_allowed,
    is_public,
    retry_after,
)
from service.handler_api import Job, JobState, PermanentError, Retry, Task, Transition
from service.settings import Settings
from service.simulator import SimulatorConfig, create_app
from service.simulator.media import SAMPLE_PNG, iter_pattern
from tests.handlers.conftest import Harness
from tests.support.servers import serve

MiB = 1024 * 1024


def pattern(size: int) -> bytes:
    """What the simulator's ``/media/blob/{size}`` serves."""
    return b"".join(iter_pattern(0, 0, size))


def leftovers(harness: Harness) -> list[str]:
    """Everything in the media directory (temp files are hidden, so list them all)."""
    media = Path(harness.settings.media_dir)
    return sorted(p.name for p in media.iterdir()) if media.exists() else []


def local(harness: Harness, base_url: str, **changes: Any) -> Settings:
    """Settings that let the handler fetch from a loopback server: its host is PixVerse's
    (always allowed) and private addresses are allowed."""
    return dataclasses.replace(harness.settings, pixverse_base_url=f"{base_url}/openapi/v2",
                               download_allow_private=True, **changes)


# The servers run on their own threads, one per module: starting and stopping uvicorn for
# each test would take most of the suite's time.
@pytest.fixture(scope="module")
def sim_url() -> Iterator[str]:
    with serve(create_app(SimulatorConfig())) as url:
        yield url


class Origin:
    """A media host for the error cases; ``hits`` lists every path requested."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        #: Lets /slow finish (set from the test's thread, so not an asyncio.Event).
        self.release = threading.Event()
        self.app = Starlette(routes=[
            Route("/blob/{size:int}", self.blob),
            Route("/status/{code:int}", self.status),
            Route("/redirect/{hops:int}", self.redirect),
            Route("/away", self.away),
            Route("/chunked/{size:int}", self.chunked),
            Route("/slow", self.slow),
            Route("/truncated", _Truncated()),
        ])

    async def blob(self, request: Request) -> Response:
        self.hits.append(request.url.path)
        return Response(pattern(request.path_params["size"]), media_type="video/mp4")

    async def status(self, request: Request) -> Response:
        self.hits.append(request.url.path)
        headers = {"retry-after": request.query_params["after"]} \
            if "after" in request.query_params else {}
        return PlainTextResponse("no", status_code=request.path_params["code"], headers=headers)

    async def redirect(self, request: Request) -> Response:
        self.hits.append(request.url.path)
        hops = request.path_params["hops"]
        return RedirectResponse(f"/redirect/{hops - 1}" if hops > 1 else "/blob/1000",
                                status_code=302)

    async def away(self, request: Request) -> Response:
        self.hits.append(request.url.path)
        return RedirectResponse(request.query_params["to"], status_code=307)

    async def chunked(self, request: Request) -> Response:
        self.hits.append(request.url.path)
        size = request.path_params["size"]
        data = pattern(size)

        async def body() -> AsyncIterator[bytes]:
            for start in range(0, size, 1000):
                yield data[start:start + 1000]

        return StreamingResponse(body())  # no Content-Length: chunked

    async def slow(self, request: Request) -> Response:
        self.hits.append(request.url.path)

        async def body() -> AsyncIterator[bytes]:
            yield b"x" * 65536
            while not self.release.is_set():
                await asyncio.sleep(0.01)

        return StreamingResponse(body(), headers={"content-length": str(10 * MiB)})


class _Truncated:
    """Announces 1000 bytes, sends 500 and ends the response (a raw ASGI app: Starlette's
    responses would not let it)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b"y" * 500, "more_body": True})


@pytest.fixture(scope="module")
def origin_server() -> Iterator[tuple[Origin, str]]:
    server = Origin()
    with serve(server.app) as url:
        yield server, url


@pytest.fixture
def origin(origin_server: tuple[Origin, str]) -> Iterator[tuple[Origin, str]]:
    server, _url = origin_server
    server.hits.clear()
    server.release.clear()
    try:
        yield origin_server
    finally:
        server.release.set()


async def _job(harness: Harness, url: str, **payload: Any) -> tuple[Job, Transition, Task]:
    return await harness.transition("download", payload={"url": url, **payload})


async def _run(harness: Harness, settings: Settings, job: Job, transition: Transition,
               task: Task) -> Job:
    await DownloadHandler(settings, {}).run(job, transition,
                                            harness.context(task, settings=settings))
    fresh = await harness.store.get_job(job.id)
    assert fresh is not None
    return fresh


# -- success ----------------------------------------------------------------------------------


async def test_downloads_from_the_simulator_and_records_path_hash_and_size(
        harness: Harness, sim_url: str, caplog: pytest.LogCaptureFixture) -> None:
    size = 3 * MiB + 17  # not a multiple of the write batch
    job, transition, task = await _job(harness, f"{sim_url}/media/blob/{size}", size=size)
    assert DownloadHandler(harness.settings, {}).wants(job, transition)
    with caplog.at_level(logging.INFO, logger="tests.handlers.download"):
        done = await _run(harness, local(harness, sim_url), job, transition, task)

    expected = pattern(size)
    path = Path(harness.settings.media_dir).resolve() / f"{job.id}.mp4"
    assert done.media_path == str(path)
    assert done.media_size == size
    assert done.media_sha256 == hashlib.sha256(expected).hexdigest()
    assert path.read_bytes() == expected
    assert leftovers(harness) == [path.name]
    [line] = [r.getMessage() for r in caplog.records if r.name == "tests.handlers.download"]
    assert f"downloaded {size} bytes" in line and "MB/s" in line
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_large_body_is_read_in_pieces_larger_than_httpcores_64_kib(
        harness: Harness, origin: tuple[Origin, str], monkeypatch: pytest.MonkeyPatch) -> None:
    # Each piece costs the event loop a trip through anyio, h11, httpcore and httpx, so the
    # handler asks its connection for READ_BYTES at a time (scripts/bench_download).
    _server, url = origin
    size = 4 * MiB
    pieces: list[int] = []
    aiter_bytes = httpx.Response.aiter_bytes

    async def recorded(response: httpx.Response,
                       chunk_size: int | None = None) -> AsyncIterator[bytes]:
        async for piece in aiter_bytes(response, chunk_size):
            if not pieces:
                # Let the rest of the body arrive: it waits in the socket's buffer, and each
                # read then takes as much as it may.
                await asyncio.sleep(0.2)
            pieces.append(len(piece))
            yield piece

    monkeypatch.setattr(httpx.Response, "aiter_bytes", recorded)
    # A receive buffer that holds the whole body, so what a read returns is not up to TCP.
    transport = httpx.AsyncHTTPTransport(
        socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 2 * size)])
    job, transition, task = await _job(harness, f"{url}/blob/{size}")
    settings = local(harness, url)
    async with httpx.AsyncClient(transport=transport) as http:
        context = dataclasses.replace(harness.context(task, settings=settings), http=http)
        await DownloadHandler(settings, {}).run(job, transition, context)
    done = await harness.store.get_job(job.id)

    assert done is not None and done.media_sha256 == hashlib.sha256(pattern(size)).hexdigest()
    assert sum(pieces) == size
    assert max(pieces) > 64 * 1024, f"largest piece {max(pieces)} bytes"


async def test_a_body_of_thousands_of_small_chunks_is_written_whole(
        harness: Harness, origin: tuple[Origin, str]) -> None:
    # A write batch then holds more chunks than one writev takes (1024 on Linux).
    _server, url = origin
    size = 3 * MiB
    job, transition, task = await _job(harness, f"{url}/chunked/{size}")
    done = await _run(harness, local(harness, url), job, transition, task)
    assert done.media_size == size
    assert done.media_sha256 == hashlib.sha256(pattern(size)).hexdigest()
    assert done.media_path is not None and Path(done.media_path).read_bytes() == pattern(size)


async def test_an_image_keeps_its_extension(harness: Harness, sim_url: str) -> None:
    job, transition, task = await _job(harness, f"{sim_url}/media/frames/key.png")
    done = await _run(harness, local(harness, sim_url), job, transition, task)
    assert done.media_path is not None and done.media_path.endswith(f"{job.id}.png")
    assert Path(done.media_path).read_bytes() == SAMPLE_PNG.read_bytes()


async def test_wants_only_transitions_with_a_url(harness: Harness) -> None:
    handler = DownloadHandler(harness.settings, {})
    assert handler.events == frozenset({JobState.SUCCEEDED})
    job, transition, _task = await harness.transition("download")  # the payload's url is ""
    assert not handler.wants(job, transition)


async def test_a_host_from_the_allow_list_is_fetched(harness: Harness,
                                                     origin: tuple[Origin, str]) -> None:
    server, url = origin
    port = httpx.URL(url).port
    # PixVerse's host is the default (not local); "localhost" comes from the allow-list.
    settings = dataclasses.replace(harness.settings, download_hosts=("localhost",),
                                   download_allow_private=True)
    job, transition, task = await _job(harness, f"http://localhost:{port}/blob/2000")
    done = await _run(harness, settings, job, transition, task)
    assert done.media_size == 2000 and server.hits == ["/blob/2000"]


async def test_redirects_within_allowed_hosts_are_followed(
        harness: Harness, origin: tuple[Origin, str]) -> None:
    server, url = origin
    job, transition, task = await _job(harness, f"{url}/redirect/5")
    done = await _run(harness, local(harness, url), job, transition, task)
    assert done.media_size == 1000 and len(server.hits) == 6


async def test_a_size_disagreeing_with_the_webhook_is_only_a_warning(
        harness: Harness, sim_url: str, caplog: pytest.LogCaptureFixture) -> None:
    job, transition, task = await _job(harness, f"{sim_url}/media/blob/5000", size=4999)
    with caplog.at_level(logging.INFO, logger="tests.handlers.download"):
        done = await _run(harness, local(harness, sim_url), job, transition, task)
    assert done.media_size == 5000
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "4999" in warning.getMessage() and "5000" in warning.getMessage()


async def test_query_strings_stay_out_of_logs_and_errors(
        harness: Harness, origin: tuple[Origin, str], caplog: pytest.LogCaptureFixture) -> None:
    _server, url = origin
    settings = local(harness, url)
    job, transition, task = await _job(harness, f"{url}/blob/100?token=s3cret-sig")
    with caplog.at_level(logging.DEBUG, logger="tests.handlers.download"):
        await _run(harness, settings, job, transition, task)
    ours = [r.getMessage() for r in caplog.records if r.name == "tests.handlers.download"]
    assert ours and f"{url}/blob/100" in ours[0]
    assert not any("s3cret" in line for line in ours)

    job, transition, task = await _job(harness, f"{url}/status/403?token=s3cret-sig")
    with pytest.raises(PermanentError) as info:
        await _run(harness, settings, job, transition, task)
    assert "403" in str(info.value) and "s3cret" not in str(info.value)


async def test_memory_stays_flat_for_a_20_mib_download(harness: Harness, sim_url: str) -> None:
    size = 20 * MiB
    job, transition, task = await _job(harness, f"{sim_url}/media/blob/{size}")
    tracemalloc.start()
    try:
        done = await _run(harness, local(harness, sim_url), job, transition, task)
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done.media_size == size
    # The simulator runs in this process too, so its buffers count; the body never does.
    assert peak < 6 * MiB, f"peak {peak / MiB:.1f} MiB"
    assert done.media_sha256 == hashlib.sha256(pattern(size)).hexdigest()


# -- idempotency ------------------------------------------------------------------------------


async def test_a_rerun_does_not_download_again(harness: Harness,
                                               origin: tuple[Origin, str]) -> None:
    server, url = origin
    settings = local(harness, url)
    job, transition, task = await _job(harness, f"{url}/blob/4096")
    done = await _run(harness, settings, job, transition, task)
    again = await _run(harness, settings, done, transition, task)  # as the worker would
    assert server.hits == ["/blob/4096"]
    assert again == done


async def test_a_stale_or_partial_file_is_replaced(harness: Harness,
                                                   origin: tuple[Origin, str]) -> None:
    server, url = origin
    settings = local(harness, url)
    job, transition, task = await _job(harness, f"{url}/blob/4096")
    media = Path(settings.media_dir)
    media.mkdir()
    (media / f"{job.id}.mp4").write_bytes(b"left over from an older run")
    done = await _run(harness, settings, job, transition, task)
    assert done.media_path is not None
    Path(done.media_path).write_bytes(b"cut short")  # recorded, then damaged
    done = await _run(harness, settings, done, transition, task)
    assert len(server.hits) == 2
    assert Path(str(done.media_path)).read_bytes() == pattern(4096)
    assert leftovers(harness) == [f"{job.id}.mp4"]


# -- refused URLs and file names --------------------------------------------------------------


async def test_a_host_outside_the_allow_list_is_refused(harness: Harness,
                                                        origin: tuple[Origin, str]) -> None:
    server, url = origin
    job, transition, task = await _job(harness, f"{url}/blob/100")
    settings = dataclasses.replace(harness.settings, download_allow_private=True)
    with pytest.raises(PermanentError, match="not in PIXHOOK_DOWNLOAD_HOSTS"):
        await _run(harness, settings, job, transition, task)
    assert server.hits == [] and leftovers(harness) == []


async def test_loopback_is_refused_unless_private_addresses_are_allowed(
        harness: Harness, origin: tuple[Origin, str]) -> None:
    server, url = origin
    job, transition, task = await _job(harness, f"{url}/blob/100")
    settings = dataclasses.replace(local(harness, url), download_allow_private=False)
    with pytest.raises(PermanentError, match="non-public address 127.0.0.1"):
        await _run(harness, settings, job, transition, task)
    assert server.hits == [] and leftovers(harness) == []


async def test_a_redirect_to_a_disallowed_host_is_refused(harness: Harness,
                                                          origin: tuple[Origin, str]) -> None:
    server, url = origin
    port = httpx.URL(url).port
    job, transition, task = await _job(
        harness, f"{url}/away?to=http://localhost:{port}/blob/100")
    with pytest.raises(PermanentError, match="'localhost' is not in PIXHOOK_DOWNLOAD_HOSTS"):
        await _run(harness, local(harness, url), job, transition, task)
    assert server.hits == ["/away"] and leftovers(harness) == []


async def test_a_redirect_to_another_scheme_is_refused(harness: Harness,
                                                       origin: tuple[Origin, str]) -> None:
    _server, url = origin
    job, transition, task = await _job(harness, f"{url}/away?to=file:///etc/passwd")
    with pytest.raises(PermanentError, match="not http"):
        await _run(harness, local(harness, url), job, transition, task)


async def test_more_than_five_redirects_are_refused(harness: Harness,
                                                    origin: tuple[Origin, str]) -> None:
    server, url = origin
    job, transition, task = await _job(harness, f"{url}/redirect/6")
    with pytest.raises(PermanentError, match="more than 5 redirects"):
        await _run(harness, local(harness, url), job, transition, task)
    assert len(server.hits) == 6 and leftovers(harness) == []


@pytest.mark.parametrize("job_id", ["../evil", "a/b", "..", ".hidden", "x.mp4", "",
                                    "evil\x00", "caf\u00e9", "a b"])
async def test_unsafe_job_ids_are_refused(harness: Harness, origin: tuple[Origin, str],
                                          job_id: str) -> None:
    server, url = origin
    job, transition, task = await _job(harness, f"{url}/blob/100")
    with pytest.raises(PermanentError, match="not a safe file name"):
        await _run(harness, local(harness, url), dataclasses.replace(job, id=job_id),
                   transition, task)
    assert server.hits == [] and leftovers(harness) == []
    assert not [p for p in harness.tmp_path.iterdir() if not p.name.startswith("pixhook.db")]


async def test_a_symlink_out_of_the_media_dir_is_refused(harness: Harness,
                                                         origin: tuple[Origin, str]) -> None:
    server, url = origin
    job, transition, task = await _job(harness, f"{url}/blob/100")
    media = Path(harness.settings.media_dir)
    media.mkdir()
    outside = harness.tmp_path / "outside.mp4"
    (media / f"{job.id}.mp4").symlink_to(outside)
    with pytest.raises(PermanentError, match="outside the media directory"):
        await _run(harness, local(harness, url), job, transition, task)
    assert server.hits == [] and not outside.exists()


# -- HTTP errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "outcome", "after"), [
    ("/status/404", Retry, 5.0),
    ("/status/429?after=7", Retry, 7.0),
    ("/status/503?after=2", Retry, 2.0),
    ("/status/500", DownloadError, None),
    ("/status/429", DownloadError, None),
    ("/status/403", PermanentError, None),
    ("/status/410", PermanentError, None),
    ("/status/401", PermanentError, None),
])
async def test_http_errors_end_the_run_the_right_way(
        harness: Harness, origin: tuple[Origin, str], path: str,
        outcome: type[Exception], after: float | None) -> None:
    _server, url = origin
    job, transition, task = await _job(harness, f"{url}{path}")
    with pytest.raises(outcome) as info:
        await _run(harness, local(harness, url), job, transition, task)
    if isinstance(info.value, Retry):
        assert info.value.after == after
    assert leftovers(harness) == []
    fresh = await harness.store.get_job(job.id)
    assert fresh is not None and fresh.media_path is None


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("12") == 12.0
    assert retry_after(None) is None and retry_after("soon") is None
    in_a_minute = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 55 <= (retry_after(in_a_minute) or 0) <= 60
    assert retry_after("999999") == 3600.0 and retry_after("-5") == 0.0


async def test_a_truncated_body_is_retried_and_leaves_nothing(
        harness: Harness, origin: tuple[Origin, str]) -> None:
    _server, url = origin
    job, transition, task = await _job(harness, f"{url}/truncated")
    with pytest.raises(Exception) as info:
        await _run(harness, local(harness, url), job, transition, task)
    # Neither Retry nor PermanentError: the worker retries it with backoff.
    assert isinstance(info.value, (DownloadError, httpx.TransportError))
    assert not isinstance(info.value, (Retry, PermanentError))
    assert leftovers(harness) == []


async def test_a_declared_size_over_the_limit_is_refused_before_the_body(
        harness: Harness, origin: tuple[Origin, str]) -> None:
    _server, url = origin
    job, transition, task = await _job(harness, f"{url}/blob/5000")
    with pytest.raises(PermanentError, match="5000 bytes, more than"):
        await _run(harness, local(harness, url, download_max_bytes=1000), job, transition, task)
    assert leftovers(harness) == []


async def test_a_streamed_body_over_the_limit_is_cut_off(harness: Harness,
                                                         origin: tuple[Origin, str]) -> None:
    _server, url = origin
    job, transition, task = await _job(harness, f"{url}/chunked/5000")
    with pytest.raises(PermanentError, match="more than PIXHOOK_DOWNLOAD_MAX_BYTES=1000"):
        await _run(harness, local(harness, url, download_max_bytes=1000), job, transition, task)
    assert leftovers(harness) == []


async def test_a_cancelled_download_leaves_no_temp_file(harness: Harness,
                                                        origin: tuple[Origin, str]) -> None:
    server, url = origin
    job, transition, task = await _job(harness, f"{url}/slow")
    run = asyncio.create_task(_run(harness, local(harness, url), job, transition, task))
    media = Path(harness.settings.media_dir)
    async with asyncio.timeout(5):
        while not any(media.glob(".*.part")):  # the body has started arriving
            await asyncio.sleep(0.01)
    run.cancel()  # as the worker's task timeout does
    with pytest.raises(asyncio.CancelledError):
        await run
    server.release.set()
    assert leftovers(harness) == []


# -- partial files left by a crashed attempt ---------------------------------------------------

#: A process that downloads ``/slow`` (which never ends) into a media directory until killed:
#: argv is the origin's URL and the directory.
CRASHING_DOWNLOAD = """
import asyncio, sys
from pathlib import Path
import httpx
from handlers.download import UrlGuard, _open, _save
from service.settings import Settings

async def main(url, media):
    settings = Settings(pixverse_base_url=url + "/openapi/v2", download_allow_private=True)
    async with httpx.AsyncClient() as http:
        async with _open(http, httpx.URL(url + "/slow"), UrlGuard(settings), 30) as response:
            await _save(response, Path(media) / "job_crashed.mp4", None, 1 << 40)

asyncio.run(main(*sys.argv[1:]))
"""


def _age(path: Path, seconds: float = SWEEP_GRACE_SECONDS + 60) -> Path:
    """Make ``path`` look ``seconds`` old (a restart that much later)."""
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)
    return path


def _partials(media: Path) -> list[str]:
    return sorted(p.name for p in media.glob(".*.part"))


async def _until_partial(media: Path) -> Path:
    async with asyncio.timeout(10):
        while not (found := list(media.glob(".*.part"))):
            await asyncio.sleep(0.02)
    [partial] = found
    return partial


async def test_a_partial_file_left_by_a_killed_download_is_swept_at_start(
        harness: Harness, origin: tuple[Origin, str]) -> None:
    _server, url = origin
    media = Path(harness.settings.media_dir)
    media.mkdir()
    crashing = subprocess.Popen([sys.executable, "-c", CRASHING_DOWNLOAD, url, str(media)],
                                env={**os.environ, "PYTHONPATH": str(Path.cwd())})
    try:
        partial = await _until_partial(media)
    finally:
        crashing.send_signal(signal.SIGKILL)  # no finally blocks, no cleanup: a crash
        crashing.wait(10)
    assert partial.exists()  # what the crash left behind
    DownloadHandler(harness.settings, {})  # a restart, a little later than the grace period
    assert partial.exists(), "swept while younger than the grace period"
    _age(partial)
    DownloadHandler(harness.settings, {})
    assert not partial.exists()


async def test_only_stale_partial_files_of_ours_are_swept(harness: Harness) -> None:
    media = Path(harness.settings.media_dir)
    media.mkdir()
    stale = media / ".job_a1.x8k2_0qz.part"
    stale.write_bytes(b"v" * 4096)
    _age(stale)
    young = media / ".job_a2.abcdefgh.part"
    young.write_bytes(b"v")
    kept = [media / name for name in ("notes.part", ".job_a3.part", "job_a4.mp4",
                                      ".job_a5.abcdefgh.part.bak")]
    for path in kept:
        path.write_bytes(b"keep")
        _age(path)
    (media / ".job_a6.abcdefgh.part").symlink_to(harness.tmp_path / "elsewhere")
    (harness.tmp_path / "elsewhere").write_bytes(b"keep")

    DownloadHandler(harness.settings, {})
    assert not stale.exists()
    assert young.exists() and all(path.exists() for path in kept)
    assert (harness.tmp_path / "elsewhere").exists()


async def test_a_failed_attempt_sweeps_what_an_earlier_crash_left(
        harness: Harness, origin: tuple[Origin, str]) -> None:
    _server, url = origin
    settings = local(harness, url)
    handler = DownloadHandler(settings, {})  # started before the crash below
    media = Path(settings.media_dir)
    media.mkdir()
    left = media / ".job_crashed.q1w2e3r4.part"
    left.write_bytes(b"v" * 4096)
    _age(left)
    job, transition, task = await _job(harness, f"{url}/status/500")
    with pytest.raises(DownloadError):
        await handler.run(job, transition, harness.context(task, settings=settings))
    assert leftovers(harness) == []


async def test_a_live_download_is_never_swept(harness: Harness,
                                              origin: tuple[Origin, str]) -> None:
    server, url = origin
    settings = local(harness, url)
    job, transition, task = await _job(harness, f"{url}/slow")
    run = asyncio.create_task(_run(harness, settings, job, transition, task))
    try:
        live = _age(await _until_partial(Path(settings.media_dir)))  # only its lock protects it
        DownloadHandler(settings, {})  # another worker starting
        assert live.exists()
    finally:
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        server.release.set()
    assert _partials(Path(settings.media_dir)) == []  # the attempt cleaned up after itself


# -- the checks themselves --------------------------------------------------------------------


@pytest.mark.parametrize(("host", "allowed"), [
    ("media.pixverse.ai", True),
    ("MEDIA.PixVerse.AI.", True),
    ("cdn.eu.pixverse.ai", True),
    ("pixverse.ai", False),  # *.pixverse.ai is subdomains only
    ("evilpixverse.ai", False),
    ("pixverse.ai.evil.com", False),
    ("media.pixverse.ai.evil.com", False),
])
def test_host_allow_list_matching(host: str, allowed: bool) -> None:
    assert host_allowed(host, ("media.pixverse.ai", "*.pixverse.ai")) is allowed


@pytest.mark.parametrize(("address", "public"), [
    ("8.8.8.8", True), ("2606:4700:4700::1111", True),
    ("127.0.0.1", False), ("10.1.2.3", False), ("192.168.0.1", False), ("172.16.0.1", False),
    ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False),
    ("224.0.0.1", False), ("240.0.0.1", False), ("::1", False), ("::", False),
    ("fe80::1", False), ("fc00::1", False), ("::ffff:127.0.0.1", False),
    ("::ffff:10.0.0.1", False), ("127.255.0.9", False), ("fd12:3456::1", False),
    ("::ffff:169.254.169.254", False),
])
def test_address_classification(address: str, public: bool) -> None:
    assert is_public(address) is public

