"""``GET /api/events``: the event log (:mod:`service.store.event_log`) for apps, live or paged.

* With ``Accept: text/event-stream``: server-sent events, one per transition and per finished
  task run, each ``id: <position>``, ``event: <type>`` and ``data: <document>`` (the versioned
  document of :mod:`service.events`), then new ones as they are committed, on any replica.
  A comment line (``: heartbeat``) goes out after ``PIXHOOK_EVENTS_HEARTBEAT`` seconds of
  silence. The stream starts after ``Last-Event-ID`` (what ``EventSource`` sends when it
  reconnects), else after ``?after=``, else at the end of the log (only new events). It ends
  after :data:`STREAM_SECONDS` (uvicorn waits for open responses when it stops, so an endless
  one would hold a restart up); clients reconnect with ``Last-Event-ID`` and lose nothing.
* Otherwise: one JSON page, ``{"events": [...], "last_id": N}``, of events after ``?after=``
  (default 0, the start); ask again with ``?after=<last_id>``. ``last_id`` moves past events
  the filters left out, so paging through a filtered log does not rescan it.

Filters, for both: ``job``, ``kind`` (the job's), ``state`` (the job's state after the
event), ``type`` (``transition`` or ``task_run``) and ``label=key=value`` (repeatable).

Positions are handed out in commit order on both databases (the event log's docstring says
how), so resuming after the last position received is exact: a client that reconnects, even
after the service restarted, misses nothing and gets nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Final

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from service import api_input
from service.api import BearerGuard, input_error
from service.api_input import EventQuery, InputError
from service.api_output import APIResponse
from service.events import EventType, JobEvent, event_document
from service.lifecycle import JobState
from service.settings import Settings
from service.store import StorageError, Store
from service.store.event_log import EventPage

logger = logging.getLogger(__name__)

#: How long one stream lasts before the client is asked to reconnect, in seconds.
STREAM_SECONDS: Final = 60.0
#: What an ``EventSource`` waits before reconnecting, in milliseconds.
RETRY_MS: Final = 1000
#: Events read per look at the log (a stream pages through a burst without sleeping).
STREAM_PAGE: Final = 200
#: A JSON page's default and largest size.
DEFAULT_PAGE: Final = 100
MAX_PAGE: Final = 1000
#: The shortest look interval, whatever the setting says (0 would spin), in seconds.
MIN_POLL_SECONDS: Final = 0.05

_TYPES: Final = {"transition": EventType.TRANSITION, "task_run": EventType.TASK_RUN}


def sse_message(event: JobEvent) -> str:
    """One server-sent event: the position, the type and the document on one data line."""
    document = json.dumps(event_document(event), separators=(",", ":"))
    return f"id: {event.sequence}\nevent: {event.type.value}\ndata: {document}\n\n"


class EventsAPI:
    """``GET /api/events`` (bearer token, as the rest of ``/api``)."""

    def __init__(self, store: Store, settings: Settings, *,
                 stream_seconds: float | None = None) -> None:
        self._store = store
        self._settings = settings
        self._guard = BearerGuard(settings)
        self.stream_seconds = STREAM_SECONDS if stream_seconds is None else stream_seconds

    def routes(self) -> list[Route]:
        return [Route("/api/events", self._guard(self.events), methods=["GET"])]

    async def events(self, request: Request) -> Response:
        try:
            query = api_input.event_query(request, {state.value for state in JobState})
            limit = _page_size(request.query_params.get("limit"))
        except InputError as exc:
            return input_error(exc)
        if "text/event-stream" in request.headers.get("accept", ""):
            after = query.after
            if after is None:
                after = await self._store.last_event_sequence()
            return StreamingResponse(self._stream(query, after), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-store",
                                              "X-Accel-Buffering": "no"})
        page = await self._page(query, query.after or 0, limit)
        return APIResponse({"events": [event_document(e) for e in page.events],
                            "last_id": page.last_sequence})

    async def _page(self, query: EventQuery, after: int, limit: int) -> EventPage:
        return await self._store.list_events(
            after=after, job_id=query.job_id, kind=query.kind,
            state=None if query.state is None else JobState(query.state),
            type=None if query.type is None else _TYPES[query.type], labels=query.labels,
            limit=limit)

    async def _stream(self, query: EventQuery, after: int) -> AsyncIterator[str]:
        yield f"retry: {RETRY_MS}\n\n"
        poll = max(self._settings.events_poll_interval, MIN_POLL_SECONDS)
        heartbeat = max(self._settings.events_heartbeat, MIN_POLL_SECONDS)
        now = time.monotonic()
        deadline, quiet_since = now + self.stream_seconds, now
        while time.monotonic() < deadline:
            try:
                page = await self._page(query, after, STREAM_PAGE)
            except StorageError as exc:
                # The client keeps its position; the next look (or reconnect) picks up there.
                logger.warning("event stream: the store failed: %s", exc,
                               extra={"action": "event_stream"})
                page = None
            if page is not None:
                for event in page.events:
                    yield sse_message(event)
                    quiet_since = time.monotonic()
                after = page.last_sequence
                if page.scanned == STREAM_PAGE:
                    continue  # a burst: page through it before sleeping
            if time.monotonic() - quiet_since >= heartbeat:
                yield ": heartbeat\n\n"  # a closed connection shows up as a failed write
                quiet_since = time.monotonic()
            await asyncio.sleep(poll)


def _page_size(value: str | None) -> int:
    if value is None:
        return DEFAULT_PAGE
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_PAGE:
        raise InputError(f"limit must be 1..{MAX_PAGE}", "limit")
    return int(value)

