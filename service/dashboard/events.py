"""``GET /events``: server-sent events that keep the dashboard live without reloading.

Two modes:

* the jobs list (``?since=&state=``): every ~0.5 s the store is asked for jobs updated since
  the last look, and each changed job goes out as an ``event: job`` with its re-rendered row;
* one job page (``?job=&sig=``): ``sig`` fingerprints the job and its tasks as the page showed
  them; when the fingerprint changes, one ``event: changed`` tells the page to reload.

Polling the store (rather than an in-process signal) means a separate worker process's
changes show up too. A write's ``updated_at`` may be read from the clock a moment before it
commits, so each look reaches back ``OVERLAP_SECONDS`` and skips what it already sent.

A stream ends after ``stream_seconds``: uvicorn waits for open responses when it shuts down,
and an endless stream would hold it up. ``EventSource`` reconnects on its own (``retry:``)
and sends the last event id, the watermark, so nothing is missed in between.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from service.dashboard import auth, present, templating
from service.lifecycle import JobState
from service.settings import Settings
from service.store import StorageError, Store

logger = logging.getLogger(__name__)

#: How far back each look reaches past the watermark, in seconds.
OVERLAP_SECONDS: Final = 2.0
#: Most jobs read per look.
BATCH: Final = 200
#: What the browser waits before reconnecting, in milliseconds.
RETRY_MS: Final = 1000


def _event(name: str, data: dict[str, Any], event_id: str | None = None) -> str:
    lines = [f"event: {name}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":")))
    return "\n".join(lines) + "\n\n"


def _float(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return number if number is not None and number >= 0 else None


async def job_signature(store: Store, job_id: str) -> str:
    """A fingerprint of a job and its tasks: changes whenever either does. A task's
    ``updated_at`` is left out: renewing a long run's lease changes it, and nothing shown."""
    job = await store.get_job(job_id)
    tasks = await store.list_tasks(job_id=job_id)
    seen = (None if job is None else (job.state.value, job.updated_at),
            [(t.id, t.state.value, t.attempts, t.last_error) for t in tasks])
    return hashlib.sha256(repr(seen).encode()).hexdigest()[:16]


class LiveEvents:
    """The ``/events`` endpoint (login required: 401, not a redirect, for ``EventSource``)."""

    def __init__(self, settings: Settings, store: Store, credits: present.CreditsBook, *,
                 poll_seconds: float = 0.5, stream_seconds: float = 8.0) -> None:
        self._settings = settings
        self._store = store
        self._credits = credits
        self.poll_seconds = poll_seconds
        self.stream_seconds = stream_seconds

    async def endpoint(self, request: Request) -> Response:
        if not auth.logged_in(request, self._settings):
            return PlainTextResponse("log in first", status_code=401)
        query = request.query_params
        job_id = query.get("job")
        if job_id:
            stream = self._job_stream(job_id, query.get("sig", ""))
        else:
            state = query.get("state") or None
            if state is not None and state not in {s.value for s in JobState}:
                return PlainTextResponse("unknown state", status_code=400)
            since = (_float(request.headers.get("last-event-id")) or _float(query.get("since"))
                     or time.time())
            stream = self._list_stream(since, state)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store",
                                          "X-Accel-Buffering": "no"})

    async def _list_stream(self, since: float, state: str | None) -> AsyncIterator[str]:
        yield f"retry: {RETRY_MS}\n\n"
        deadline = time.monotonic() + self.stream_seconds
        watermark = since
        query_from = since - OVERLAP_SECONDS
        sent: dict[str, float] = {}
        store_ok = True
        while time.monotonic() < deadline:
            try:
                jobs = await self._store.jobs_updated_since(query_from, limit=BATCH)
                rows = [(job, await self._credits.credits(job)) for job in jobs]
                failed = await self._store.dead_tasks_by_job([job.id for job in jobs])
            except StorageError as exc:
                if store_ok:
                    logger.warning("dashboard events: the store failed: %s", exc,
                                   extra={"action": "dashboard_events"})
                    yield _event("store", {"ok": False})
                store_ok = False
                await asyncio.sleep(self.poll_seconds)
                continue
            if not store_ok:
                yield _event("store", {"ok": True})
                store_ok = True
            for job, credits in rows:
                watermark = max(watermark, job.updated_at)
                if sent.get(job.id) == job.updated_at:
                    continue
                sent[job.id] = job.updated_at
                row = present.JobRow.of(job, credits)
                yield _event("job", {"id": job.id, "state": job.state.value,
                                     "matches": state is None or job.state.value == state,
                                     "html": templating.row_html(row, failed.get(job.id, []))},
                             event_id=repr(watermark))
            if len(jobs) == BATCH:
                query_from = jobs[-1].updated_at  # a burst: page through it before sleeping
                continue
            query_from = watermark - OVERLAP_SECONDS
            sent = {key: value for key, value in sent.items() if value >= query_from}
            yield ": tick\n\n"  # a closed connection shows up as a failed write
            await asyncio.sleep(self.poll_seconds)

    async def _job_stream(self, job_id: str, signature: str) -> AsyncIterator[str]:
        yield f"retry: {RETRY_MS}\n\n"
        deadline = time.monotonic() + self.stream_seconds
        while time.monotonic() < deadline:
            try:
                current = await job_signature(self._store, job_id)
            except StorageError:
                current = signature  # say nothing; the page is still what it was
            if current != signature:
                yield _event("changed", {"id": job_id})
                return
            yield ": tick\n\n"
            await asyncio.sleep(self.poll_seconds)
