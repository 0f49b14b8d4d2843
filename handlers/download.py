"""The download handler: keep a copy of every finished video in ``PIXHOOK_MEDIA_DIR``.

PixVerse's result URLs are not forever, and pixhook's own signed links (``GET /media/{token}``)
serve the local copy, so a succeeded job's video is fetched once and recorded on the job
(``media_path``, ``media_sha256``, ``media_size``).

Videos run to gigabytes, so the body is streamed: each chunk is hashed and written as it
arrives, and memory stays flat whatever the size. Hashing and writing happen on a worker thread
in batches of :data:`WRITE_BYTES`, overlapping with the network reads, so the event loop is
never stalled by a slow disk. The file appears under its final name only when complete: it is
written to a hidden temp file in the same directory, fsynced, then renamed with ``os.replace``
(atomic within one file system). Every failure, cancellation included, removes the temp file.
When the disk is fast, the event loop's share (httpx's per-chunk work) is what limits the rate
(``scripts/bench_download``), so it reads :data:`READ_BYTES` at a time and never copies a
chunk: the writer thread hashes the chunks as they came and writes them with one ``writev``.

A process killed mid-download (SIGKILL, a power cut) cannot clean up, so its temp file would
stay and, over time, fill the disk. Temp files are named ``.{job id}.{8 random}.part`` and held
under an exclusive ``flock`` while written (the kernel drops it when the writer dies), and the
handler sweeps the media directory when it is built (at start) and after every failed attempt:
a partial file is removed when nothing holds its lock and it is older than
:data:`SWEEP_GRACE_SECONDS` (the moment between creating a temp file and locking it).

The URL comes from a webhook, so it is treated as untrusted (server-side request forgery):

* only hosts in ``PIXHOOK_DOWNLOAD_HOSTS`` (exact, or ``*.example.com`` for subdomains) and the
  host of ``PIXVERSE_BASE_URL`` are fetched;
* every address the host resolves to must be public, unless
  ``PIXHOOK_DOWNLOAD_ALLOW_PRIVATE`` (the local simulator serves on loopback), and the URL may
  carry no user info: the address check is :mod:`service.outbound`'s, shared with the forward
  handler;
* redirects are followed by hand, at most :data:`MAX_REDIRECTS`, checking each hop the same way;
* connecting and every hop up to the final answer's headers take at most
  ``PIXHOOK_OUTBOUND_TIMEOUT`` in all (a server trickling its headers cannot hold the task);
  the body's pace is bounded by the read timeout and ``PIXHOOK_TASK_TIMEOUT``;
* the file name comes from the job id, never from the URL (only its extension does), and must
  land inside the media directory.

The address check resolves the name before httpx does, so a DNS server that answers
differently the second time could still steer the connection; the host allow-list is the
primary defence, the address check a second one.

How a run ends: ``PermanentError`` for what cannot work (host not allowed, private address,
403/410, other 4xx, too big, too many redirects, a bad job id); ``Retry`` for 404 (media can
lag briefly behind the webhook) and 429/5xx with ``Retry-After``; :class:`DownloadError` (a
``TransientError``: plain backoff) for 429/5xx without it, a truncated body, a name that does
not resolve, no headers within the deadline and other transient trouble.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Final

import httpcore
import httpx

from service.handler_api import (
    IDENTITY,
    AddressGuard,
    BaseHandler,
    HandlerContext,
    Job,
    JobState,
    PermanentError,
    Retry,
    Settings,
    TransientError,
    Transition,
    is_public,
    redact,
    reported_video,
    retry_after_seconds,
)

__all__ = ["DownloadError", "DownloadHandler", "UrlGuard", "host_allowed", "is_public",
           "media_path", "redact", "retry_after", "sweep_partials"]

#: Per-request timeouts, in seconds: ``read`` is the longest silence between two chunks, not a
#: limit on the whole transfer (the worker's ``PIXHOOK_TASK_TIMEOUT`` bounds that).
TIMEOUT: Final = httpx.Timeout(connect=10.0, read=60.0, write=10.0, pool=10.0)
#: Redirects followed before giving up.
MAX_REDIRECTS: Final = 5
#: Bytes handed to the writer thread at once: large enough that thread hand-offs cost nothing,
#: small enough that memory stays flat (at most about three batches are alive at once).
WRITE_BYTES: Final = 1024 * 1024
#: Most bytes one read from the connection returns (httpcore's own is 64 KiB): see
#: :func:`_read_bigger`. asyncio receives at most 256 KiB at once, so more would not help.
READ_BYTES: Final = 256 * 1024
#: Bytes between two page-cache hints while writing (Linux): see :meth:`_Writer._release_cache`.
CACHE_WINDOW_BYTES: Final = 32 * 1024 * 1024
#: Seconds before retrying a 404: a result URL can lag a little behind the webhook.
NOT_FOUND_RETRY_SECONDS: Final = 5.0
#: Longest ``Retry-After`` honoured, in seconds; a longer one is clamped to it.
MAX_RETRY_AFTER_SECONDS: Final = 3600.0
#: Extensions kept from the URL (image templates give PNGs, say); anything else is saved .mp4.
MEDIA_EXTENSIONS: Final = frozenset({".mp4", ".png", ".jpg", ".jpeg", ".webp"})
DEFAULT_EXTENSION: Final = ".mp4"
#: How :func:`_save` names its temp files: ``.{job id}.{tempfile's 8 random characters}.part``.
PARTIAL_NAME: Final = re.compile(r"\.[A-Za-z0-9_-]+\.[a-z0-9_]{8}\.part")
#: Age, in seconds, under which an unlocked partial file is left alone: the attempt that just
#: created it may not have taken its lock yet.
SWEEP_GRACE_SECONDS: Final = 60.0

_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9_-]+")
#: Buffers one writev takes (1024 on Linux; POSIX promises 16).
_IOV_MAX: Final = max(16, os.sysconf("SC_IOV_MAX"))
log = logging.getLogger(__name__)
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})


class DownloadError(TransientError):
    """A transient download failure; the worker retries it with backoff."""


class DownloadHandler(BaseHandler):
    """Streams a succeeded job's video into the media directory and records it on the job."""

    name: ClassVar[str] = "download"
    events: ClassVar[frozenset[JobState]] = frozenset({JobState.SUCCEEDED})
    #: Downloads keep the event loop busy with each chunk rather than wait: past a few at once
    #: they finish no sooner (scripts/bench_burst: 1,000 small videos were done no sooner
    #: with 16 than with 8 or 4, at more CPU each), so the loop stays free for the other
    #: handlers. 8, the old limit of all handlers together, keeps a steady stream's latency.
    concurrency: ClassVar[int] = 8

    def __init__(self, settings: Settings, options: Mapping[str, Any]) -> None:
        super().__init__(settings, options)
        # What a killed process left behind; later failures sweep again (see the docstring).
        _sweep_logged(Path(settings.media_dir))

    def wants(self, job: Job, transition: Transition) -> bool:
        return bool(reported_video(transition).url)

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        result = reported_video(transition)
        if not result.url:
            return  # configured for a state whose message carries no URL: nothing to keep
        try:
            url = httpx.URL(result.url)
        except httpx.InvalidURL as exc:
            raise PermanentError(f"the result URL is not a valid URL: {exc}") from exc
        target = media_path(Path(context.settings.media_dir), job.id, url)
        if already_downloaded(job):
            context.logger.info("job %s: %s already downloaded (%d bytes); skipping", job.id,
                                job.media_path, job.media_size)
            return
        started = time.monotonic()
        guard = UrlGuard(context.settings)
        limit = context.settings.download_max_bytes or sys.maxsize  # 0: no limit
        try:
            async with _open(context.http, url, guard,
                             context.settings.outbound_timeout) as response:
                _read_bigger(response)
                expected = _expected_length(response, limit)
                digest, size = await _save(response, target, expected, limit)
        except Exception:
            # This attempt removed its own temp file; a crashed one elsewhere could not.
            await asyncio.to_thread(_sweep_logged, target.parent)
            raise
        elapsed = time.monotonic() - started
        if isinstance(result.size, int) and result.size and result.size != size:
            # PixVerse's unit for ``size`` is undocumented (bytes in the simulator), so a
            # mismatch is worth a look but not a reason to throw the file away.
            context.logger.warning("job %s: PixVerse reported size %d, downloaded %d bytes",
                                   job.id, result.size, size)
        await context.jobs.record_media(job.id, path=str(target), sha256=digest, size=size)
        context.logger.info("job %s: downloaded %d bytes in %.2f s (%.1f MB/s) from %s to %s",
                            job.id, size, elapsed, size / max(elapsed, 1e-9) / 1e6,
                            redact(response.url), target)


# -- where the file goes ---------------------------------------------------------------------


def media_path(media_dir: Path, job_id: str, url: httpx.URL) -> Path:
    """``{media_dir}/{job_id}{ext}`` as an absolute path, refusing any id that is not plain
    ``[A-Za-z0-9_-]`` or a result that would land outside the media directory."""
    if not _SAFE_NAME.fullmatch(job_id):
        raise PermanentError(f"job id {job_id!r} is not a safe file name")
    directory = media_dir.resolve()
    target = directory / f"{job_id}{extension(url)}"
    # The name is safe, but a symlink planted at the target could still point elsewhere.
    if target.resolve().parent != directory:
        raise PermanentError(f"{target} resolves outside the media directory")
    return target


def extension(url: httpx.URL) -> str:
    """The URL's extension if it is a known media type, else ``.mp4``."""
    suffix = PurePosixPath(url.path).suffix.lower()
    return suffix if suffix in MEDIA_EXTENSIONS else DEFAULT_EXTENSION


def already_downloaded(job: Job) -> bool:
    """Whether the job's recorded file is still there, whole: a re-run after a crash (the task
    runs at least once) must not fetch gigabytes again. The size is checked, not the hash,
    which would mean reading the whole file."""
    if not job.media_path or not job.media_sha256 or job.media_size is None:
        return False
    try:
        info = os.stat(job.media_path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_size == job.media_size


def sweep_partials(media_dir: Path, now: float | None = None) -> list[str]:
    """Remove the partial downloads no live attempt is writing; return their names.

    Only regular files named like :func:`_save`'s temp files, whose ``flock`` nobody holds,
    and older than :data:`SWEEP_GRACE_SECONDS`. A missing directory has nothing to sweep.
    """
    now = time.time() if now is None else now
    try:
        entries = list(os.scandir(media_dir))
    except FileNotFoundError:
        return []
    removed = []
    for entry in entries:
        if not PARTIAL_NAME.fullmatch(entry.name) or not entry.is_file(follow_symlinks=False):
            continue
        try:
            fd = os.open(entry.path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # gone already, or not ours to open
        try:
            if now - os.fstat(fd).st_mtime < SWEEP_GRACE_SECONDS:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live attempt (in this process or another) is writing it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed.append(entry.name)
        finally:
            os.close(fd)  # releases our lock
    return removed


def _sweep_logged(media_dir: Path) -> None:
    """:func:`sweep_partials`, logging what it removed; a failure to sweep is only logged,
    since it must not stop the handler from loading or hide the attempt's own error."""
    try:
        removed = sweep_partials(media_dir)
    except OSError as exc:
        log.warning("cannot sweep partial downloads in %s: %s", media_dir, exc,
                    extra={"action": "sweep"})
        return
    if removed:
        log.info("removed %d partial download(s) left by a crashed attempt in %s: %s",
                 len(removed), media_dir, ", ".join(removed), extra={"action": "sweep"})


# -- which URLs may be fetched ----------------------------------------------------------------


def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``host`` matches an entry: exact (case-insensitive), or ``*.example.com``
    matching any subdomain of example.com (but not example.com itself)."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


class UrlGuard:
    """Checks a URL (the first, and each redirect hop) against the allow-list and, unless
    private addresses are allowed, against what its host resolves to."""

    def __init__(self, settings: Settings) -> None:
        base_host = httpx.URL(settings.pixverse_base_url).host
        self.hosts = tuple(settings.download_hosts) + ((base_host,) if base_host else ())
        self.addresses = AddressGuard(allow_private=settings.download_allow_private,
                                      setting="PIXHOOK_DOWNLOAD_ALLOW_PRIVATE",
                                      action="download", unresolved=DownloadError)

    async def check(self, url: httpx.URL) -> None:
        self.addresses.check_form(url)
        if not host_allowed(url.host, self.hosts):
            raise PermanentError(f"refusing to download {redact(url)}: host {url.host!r} is "
                                 "not in PIXHOOK_DOWNLOAD_HOSTS")
        await self.addresses.check_addresses(url)


# -- fetching ---------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _open(http: httpx.AsyncClient, url: httpx.URL, guard: UrlGuard,
                deadline: float) -> AsyncIterator[httpx.Response]:
    """The streamed 200 response for ``url``, after following redirects by hand. Checking,
    connecting and every hop up to the final headers take ``deadline`` seconds in all (0: no
    limit); the body is the caller's to read."""
    until = asyncio.get_running_loop().time() + deadline if deadline else None
    for _hop in range(MAX_REDIRECTS + 1):
        try:
            async with asyncio.timeout_at(until):
                await guard.check(url)
                # Identity encoding: the file must be the bytes as served, and Content-Length
                # must count the same bytes we do.
                request = http.build_request("GET", url, headers=IDENTITY, timeout=TIMEOUT)
                response = await http.send(request, stream=True, follow_redirects=False)
        except TimeoutError:
            raise DownloadError(f"{redact(url)} sent no answer within {deadline:g} s "
                                "(PIXHOOK_OUTBOUND_TIMEOUT)") from None
        try:
            if response.status_code in _REDIRECTS and response.next_request is not None:
                url = response.next_request.url
                continue
            _check_status(response)
            yield response
            return
        finally:
            await response.aclose()
    raise PermanentError(f"more than {MAX_REDIRECTS} redirects from {redact(url)}")


def _read_bigger(response: httpx.Response) -> None:
    """Let the HTTP/1.1 connection carrying ``response`` read :data:`READ_BYTES` at a time.

    httpcore asks for 64 KiB per read while asyncio hands over up to 256 KiB per receive, so
    anyio splits (and copies) each receive four ways, and every piece then goes alone through
    anyio, h11, httpcore and httpx: about a quarter of the event loop's CPU for a large body.
    httpx has no setting for it, so this finds the connection behind httpx's and httpcore's
    private stream wrappers; if they change shape it does nothing, and only speed is lost
    (``tests/handlers/test_download.py`` checks that it still applies). The value stays on
    the pooled connection: a read returns what has arrived, so a larger one holds no memory.
    """
    stream: object = response.stream
    for name in ("_stream", "_httpcore_stream", "_stream", "_connection"):
        stream = getattr(stream, name, None)
    if isinstance(stream, httpcore.AsyncHTTP11Connection):
        stream.READ_NUM_BYTES = READ_BYTES


def _check_status(response: httpx.Response) -> None:
    """Turn a non-200 answer into the right way for the task to end."""
    status = response.status_code
    where = redact(response.url)
    if status == 200:
        return
    if status == 404:
        raise Retry(NOT_FOUND_RETRY_SECONDS, f"{where} answered 404 (not there yet?)")
    if status == 429 or status >= 500:
        after = retry_after(response.headers.get("retry-after"))
        if after is not None:
            raise Retry(after, f"{where} answered {status}")
        raise DownloadError(f"{where} answered {status}")
    if 400 <= status < 500:
        raise PermanentError(f"{where} answered {status}")
    raise DownloadError(f"{where} answered unexpected status {status}")


def retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header, at most :data:`MAX_RETRY_AFTER_SECONDS`; ``None``
    if absent or unreadable."""
    seconds = retry_after_seconds(value)
    return None if seconds is None else min(seconds, MAX_RETRY_AFTER_SECONDS)


def _expected_length(response: httpx.Response, limit: int) -> int | None:
    """The declared body size (``None`` if not given or encoded), refusing one over ``limit``."""
    encoding = response.headers.get("content-encoding", "identity").lower()
    try:
        length = int(response.headers["content-length"])
    except (KeyError, ValueError):
        return None
    if length > limit:
        raise PermanentError(f"{redact(response.url)} is {length} bytes, more than "
                             f"PIXHOOK_DOWNLOAD_MAX_BYTES={limit}")
    return length if encoding == "identity" and length >= 0 else None


# -- writing ----------------------------------------------------------------------------------


class _Writer:
    """Hashes and writes batches on one worker thread, in order, one batch at a time, so the
    next batch is read from the network while the previous one is hashed and written.

    A batch is the list of chunks as they arrived, written with ``writev`` on the raw file
    descriptor: joining them, or a buffered file, would copy every byte once more.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._hash = hashlib.sha256()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="pixhook-download")
        self._pending: concurrent.futures.Future[None] | None = None
        self._written = 0
        #: The page-cache windows: [_window_start, _window_end) was handed to writeback at the
        #: last hint; [_window_end, _written) is being filled.
        self._window_start = 0
        self._window_end = 0

    async def write(self, chunks: list[bytes]) -> None:
        """Hand over a batch, once the one before it is written; the list is the writer's."""
        await self.drain()
        self._pending = self._executor.submit(self._write, chunks)

    def _write(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self._hash.update(chunk)  # releases the GIL for large buffers, as writev does
        self._written += _write_all(self._fd, chunks)
        if self._written - self._window_end >= CACHE_WINDOW_BYTES:
            self._release_cache()

    def _release_cache(self) -> None:
        """Start writeback of the window just filled and drop the one before it (written back
        since the previous hint) from the page cache.

        A multi-gigabyte video nobody will read soon then holds about two windows of page
        cache instead of evicting everything else, and the final fsync has little left to do.
        It also makes writing much cheaper where fresh page-cache pages are costly (on the
        2-vCPU VM the benchmark ran on, 1 GiB went from about 230 to 330 MiB/s). Only a hint:
        without ``posix_fadvise``, or if it fails, nothing changes.
        """
        if not hasattr(os, "posix_fadvise"):
            return
        with contextlib.suppress(OSError):
            os.posix_fadvise(self._fd, self._window_start,
                             self._written - self._window_start, os.POSIX_FADV_DONTNEED)
        self._window_start, self._window_end = self._window_end, self._written

    async def drain(self) -> None:
        """Wait for the batch in flight (raising what it raised)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            await asyncio.wrap_future(pending)

    async def sync(self) -> None:
        await self.drain()
        await asyncio.wrap_future(self._executor.submit(self._sync))

    def _sync(self) -> None:
        os.fsync(self._fd)

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def close(self) -> None:
        # Waits for a batch still in flight (say, after a cancellation): at most one write,
        # and the file must not be closed or removed under it. A second close does nothing:
        # by then the descriptor's number may belong to another file.
        self._executor.shutdown(wait=True)
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


async def _save(response: httpx.Response, target: Path, expected: int | None,
                limit: int) -> tuple[str, int]:
    """Stream the body into ``target`` atomically; return its SHA-256 hex digest and size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".part",
                                     dir=target.parent)
    # Held until the file is closed (or its process dies): tells sweep_partials it is live.
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    writer = _Writer(fd)
    done = False
    try:
        size = await _stream(response, writer, limit)
        if expected is not None and size != expected:
            raise DownloadError(f"{redact(response.url)}: got {size} bytes of the "
                                f"{expected} announced")
        await writer.sync()
        writer.close()
        os.replace(temp_name, target)
        done = True
        await asyncio.to_thread(_sync_directory, target.parent)
        return writer.hexdigest(), size
    finally:
        if not done:
            writer.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp_name)


async def _stream(response: httpx.Response, writer: _Writer, limit: int) -> int:
    """Feed the body to ``writer`` in batches of about :data:`WRITE_BYTES`; return its size."""
    size = 0
    batch: list[bytes] = []
    batched = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise PermanentError(f"{redact(response.url)} is more than "
                                 f"PIXHOOK_DOWNLOAD_MAX_BYTES={limit} bytes")
        batch.append(chunk)
        batched += len(chunk)
        if batched >= WRITE_BYTES:
            await writer.write(batch)
            batch = []
            batched = 0
    if batch:
        await writer.write(batch)
    await writer.drain()
    return size


def _write_all(fd: int, chunks: list[bytes]) -> int:
    """Write ``chunks`` in order with as few ``writev`` calls as the kernel allows (a regular
    file takes a whole batch at once, but a short write is legal); return the bytes written."""
    views = [memoryview(chunk) for chunk in chunks]
    total = 0
    first = 0
    while first < len(views):
        written = os.writev(fd, views[first:first + _IOV_MAX])
        total += written
        while first < len(views) and written >= len(views[first]):
            written -= len(views[first])
            first += 1
        if written:
            views[first] = views[first][written:]
    return total


def _sync_directory(directory: Path) -> None:
    """fsync the directory so the rename itself survives a power cut."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
