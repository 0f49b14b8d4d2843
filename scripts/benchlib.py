"""Shared parts of the benchmark scripts (``scripts/bench_*``); not a script itself.

Processes on loopback ports, waiting for them, the machine and its load, percentiles, and a
fast way to fill a store with jobs: one job is made through :class:`SQLiteStore` (so its row
is exactly what pixhook writes) and then cloned with plain SQL, which is thousands of times
faster than one write transaction per job.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import httpx

from service.lifecycle import JobState, TransitionSource
from service.pixverse import signature
from service.store import SQLiteStore, Store, connect, is_postgres_url
from service.store.ids import new_job_id

ROOT = Path(__file__).resolve().parent.parent


# -- the machine ---------------------------------------------------------------------------


def load_1min() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine() -> str:
    """``2 x AMD EPYC ..., Python 3.11.x``."""
    model = platform.processor() or "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} x {model}, Python {platform.python_version()}"


def wait_for_quiet(limit: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` seconds) for the 1-minute load to drop below ``limit``; return
    the load seen last. Other work on a 2-core machine skews every figure."""
    deadline = time.monotonic() + max_wait
    load = load_1min()
    while load >= limit and time.monotonic() < deadline:
        time.sleep(5)
        load = load_1min()
    return load


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile (``share`` in [0, 1]) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


# -- processes -----------------------------------------------------------------------------


@contextlib.contextmanager
def process(args: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT,
            ready_url: str | None = None, timeout: float = 20.0,
            log: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``args``; once ``ready_url`` answers (any HTTP status), yield the process. Stops it
    (SIGTERM, then SIGKILL) when the block ends."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(list(args), cwd=cwd, env=full_env, stdout=out,
                            stderr=subprocess.STDOUT)
    try:
        if ready_url is not None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    httpx.get(ready_url, timeout=1)
                    break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
                    raise SystemExit(f"{' '.join(args[:4])} did not start\n{tail}")
                time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log is not None:
            out.close()  # type: ignore[union-attr]


def python() -> str:
    return sys.executable


# -- filling a store -----------------------------------------------------------------------


async def template_job(db_path: Path | str, *, video_id: int) -> str:
    """Create one ``generating`` text-to-video job through the store API (running the
    migrations on the way); return its id. ``db_path``: a SQLite file, or a PostgreSQL URL."""
    store: Store = (connect(db_path) if isinstance(db_path, str) and is_postgres_url(db_path)
                    else SQLiteStore(db_path))
    async with store:
        job = await store.create_job(kind="text_to_video", params={
            "prompt": "a lantern over a lake", "model": "v6", "duration": 5,
            "quality": "540p", "aspect_ratio": "16:9"})
        await store.update_job(job.id, video_id=video_id)
        await store.apply_transition(job.id, JobState.GENERATING, source=TransitionSource.SUBMIT)
        return job.id


def clone_jobs(db_path: Path, template_id: str,
               rows: Sequence[tuple[int, str, float]]) -> list[str]:
    """Copy the template job once per ``(video_id, state, last_event_at)``, with fresh ids and
    trace ids and its clocks set to ``last_event_at``; one transaction. Returns the new ids."""
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]
        template = dict(zip(columns, conn.execute("SELECT * FROM jobs WHERE id = ?",
                                                  [template_id]).fetchone(), strict=True))
        marks = ", ".join(f":{name}" for name in columns)
        sql = f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({marks})"
        ids = []
        conn.execute("BEGIN")
        batch = []
        for video_id, state, event_at in rows:
            job_id = new_job_id()
            ids.append(job_id)
            batch.append({**template, "id": job_id, "trace_id": str(uuid.uuid4()),
                          "video_id": video_id, "state": state, "created_at": event_at,
                          "updated_at": event_at, "state_changed_at": event_at,
                          "last_event_at": event_at})
            if len(batch) >= 10_000:
                conn.executemany(sql, batch)
                batch.clear()
        conn.executemany(sql, batch)
        conn.execute("COMMIT")
        return ids
    finally:
        conn.close()


#: The first video id of the ingest scripts' jobs; above 2**53 like PixVerse's (and the
#: simulator's).
VIDEO_ID_BASE: Final = 384_920_175_633_408_000


def signed_done_webhook(secret: str, video_id: int, timestamp: int) -> tuple[dict[str, str],
                                                                              bytes]:
    """A status-1 PixVerse webhook for ``video_id``, with its own nonce: (signature headers,
    body). What ``bench_ingest`` replays and ``profile_ingest`` drives in-process."""
    body = json.dumps({
        "id": str(video_id), "status": 1,
        "url": f"https://media.pixverse.ai/pixverse/mp4/media/web/{video_id}.mp4",
        "size": 4_194_304, "has_audio": False, "credits": 45,
    }, separators=(",", ":")).encode()
    return signature.sign_headers(secret, body, timestamp=timestamp, nonce=uuid.uuid4().hex), body


def make_jobs(db_path: Path, rows: Sequence[tuple[int, str, float]]) -> list[str]:
    """A store at ``db_path`` holding one job per ``(video_id, state, last_event_at)``."""
    first_video, first_state, first_at = rows[0]
    template_id = asyncio.run(template_job(db_path, video_id=first_video))
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("UPDATE jobs SET state = ?, created_at = ?, updated_at = ?, "
                     "state_changed_at = ?, last_event_at = ? WHERE id = ?",
                     [first_state, first_at, first_at, first_at, first_at, template_id])
    finally:
        conn.close()
    return [template_id, *clone_jobs(db_path, template_id, rows[1:])]



def make_postgres_jobs(dsn: str, rows: Sequence[tuple[int, str, float]]) -> None:
    """:func:`make_jobs` on PostgreSQL: the schema ``dsn`` selects gets one job per
    ``(video_id, state, last_event_at)``: the first made through the store, the rest copied
    from it in one ``INSERT ... SELECT`` over arrays."""
    import psycopg

    first_video, first_state, first_at = rows[0]
    template_id = asyncio.run(template_job(dsn, video_id=first_video))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE jobs SET state = %s, created_at = %s, updated_at = %s, "
                     "state_changed_at = %s, last_event_at = %s WHERE id = %s",
                     [first_state, first_at, first_at, first_at, first_at, template_id])
        columns = [row[0] for row in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'jobs' "
            "AND table_schema = current_schema() ORDER BY ordinal_position")]
        given = {"id": "u.id", "trace_id": "u.trace_id", "video_id": "u.video_id",
                 "state": "u.state"}
        clocks = ("created_at", "updated_at", "state_changed_at", "last_event_at")
        select = ", ".join(given.get(name, "u.at" if name in clocks else f"t.{name}")
                           for name in columns)
        rest = rows[1:]
        conn.execute(
            f"INSERT INTO jobs ({', '.join(columns)}) SELECT {select} FROM jobs AS t, "
            "unnest(%(ids)s::text[], %(traces)s::text[], %(videos)s::bigint[], "
            "%(states)s::text[], %(ats)s::float8[]) AS u(id, trace_id, video_id, state, at) "
            "WHERE t.id = %(template)s",
            {"template": template_id, "ids": [new_job_id() for _ in rest],
             "traces": [str(uuid.uuid4()) for _ in rest], "videos": [row[0] for row in rest],
             "states": [row[1] for row in rest], "ats": [row[2] for row in rest]})
        conn.execute("ANALYZE jobs")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User plus system CPU time the processes have used so far (0 for one that is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            # The command name may hold spaces; the fields after its ')' are fixed.
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


# -- a lean HTTP/1.1 client ----------------------------------------------------------------


class KeepAliveConnection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for the
    benchmarks' own requests (answers with ``Content-Length``). httpx costs 3-5 ms of CPU per
    request under concurrency on this machine, so a client pacing hundreds of requests a
    second would be the bottleneck it is trying to measure around."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """Send one request and read its answer: (status, body)."""
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        lines = [f"{method} {path} HTTP/1.1", f"host: {self._host}:{self._port}",
                 f"content-length: {len(body)}",
                 *(f"{name}: {value}" for name, value in (headers or {}).items())]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in header_lines:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), await self._reader.readexactly(length)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
