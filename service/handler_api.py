"""The handler protocol: everything a handler plugin may import from pixhook.

A handler reacts to job transitions. pixhook queues one task per (applied transition, wanted
handler) in the same transaction as the transition, and a worker runs it later, outside any
webhook request, with retries. A minimal third-party handler::

    from service.handler_api import (BaseHandler, HandlerContext, Job, JobState, Transition,
                                     reported_video)

    class PrintHandler(BaseHandler):
        name = "print"
        events = frozenset({JobState.SUCCEEDED})

        async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
            result = reported_video(transition)
            # ``job`` is the copy taken when the task was queued; read it again for the
            # fields other handlers may have recorded since (``media_path``, say).
            current = await context.jobs.get(job.id) or job
            context.logger.info("job %s done: %s (local copy: %s)", job.id, result.url,
                                current.media_path)

registered in its package's ``pyproject.toml``::

    [project.entry-points."pixhook.handlers"]
    print = "my_package.handlers:PrintHandler"

A handler sees pixhook only through this module and its :class:`HandlerContext`: the HTTP
client, ``jobs`` (read a job, record a downloaded file or an error on it; never the store
itself), settings, its options, the task and ``submit``. The built-in handlers keep to the same
rule (``tests/handlers/test_plugin_boundary.py`` checks their imports).

What a run may end with:

* returning: the task succeeded and never runs again;
* ``raise Retry(after=30)``: run again in 30 seconds (counts as an attempt);
* ``raise PermanentError("why")``: the task is dead at once (visible in ``/api/tasks``,
  retried only on demand);
* ``raise TransientError("why")`` (or a subclass), or any other exception: retried with
  exponential backoff and jitter until ``PIXHOOK_TASK_MAX_ATTEMPTS``, then dead.

Tasks run *at least once*: a worker that dies mid-run leaves a lease that expires, and the task
runs again. Make effects idempotent with ``context.task.idempotency_key`` (stable across runs).

A worker runs at most ``concurrency`` tasks of one handler at once (16 unless the class says
otherwise; ``concurrency = N`` in its config overrides), and other handlers' tasks do not wait
behind a handler at its limit.

These exceptions are the ``HandlerError`` branch of pixhook's one exception tree, drawn whole in
:mod:`service.exceptions` (defined in :mod:`service.handler_errors`).

A handler that calls a URL it did not choose (a webhook's, a job's) keeps to the rules of
:mod:`service.outbound`, re-exported here: :class:`AddressGuard` refuses private addresses and
user info, :func:`read_capped` reads a bounded part of an answer, :func:`excerpt` makes it safe
to quote, and ``settings.outbound_timeout`` bounds the whole exchange.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC
from typing import Any, ClassVar, Final, Protocol, runtime_checkable

import httpx

from service.events import EventType, JobEvent, event_document, transition_event
from service.exceptions import ServiceError
from service.handler_errors import HandlerError, PermanentError, Retry, TransientError
from service.lifecycle import TERMINAL_STATES, JobState
from service.media import MediaLinks
from service.outbound import (
    IDENTITY,
    MAX_ANSWER_BYTES,
    AddressGuard,
    excerpt,
    is_public,
    parse_url,
    read_capped,
    redact,
)
from service.pixverse.models import VIDEO_INPUT_FIELD
from service.settings import Settings
from service.store import Job, Task, Transition

__all__ = [
    "DEFAULT_HANDLER_CONCURRENCY",
    "IDENTITY",
    "MAX_ANSWER_BYTES",
    "VIDEO_INPUT_FIELD",
    "AddressGuard",
    "BaseHandler",
    "EventType",
    "Handler",
    "HandlerContext",
    "HandlerError",
    "HandlerFactory",
    "Job",
    "JobEvent",
    "JobState",
    "JobsView",
    "PermanentError",
    "ReportedVideo",
    "Retry",
    "ServiceError",
    "Settings",
    "StoreJobsView",
    "SubmitFunction",
    "Task",
    "TransientError",
    "Transition",
    "event_document",
    "excerpt",
    "is_public",
    "media_url",
    "parse_url",
    "read_capped",
    "redact",
    "reported_video",
    "retry_after_seconds",
    "transition_event",
]


class JobsView(Protocol):
    """``context.jobs``: what a handler may read and write of pixhook's jobs.

    Narrow on purpose: the queue, leases and transitions are the worker's and the store's
    business, and a handler that could change them could break exactly-once submission or
    at-least-once delivery.
    """

    async def get(self, job_id: str) -> Job | None:
        """The job as it is now (the ``job`` a run gets is the copy taken when its task was
        queued); ``None`` if there is no such job."""
        ...

    async def record_media(self, job_id: str, *, path: str, sha256: str, size: int) -> Job:
        """Record the job's downloaded video: where it is, its SHA-256 hex digest and size."""
        ...

    async def record_error(self, job_id: str, message: str) -> Job:
        """Set the job's ``last_error`` to ``message`` (replacing what was there)."""
        ...


class _JobRecords(Protocol):
    """The two store methods :class:`StoreJobsView` uses; any ``service.store.Store`` has
    them. Spelt out here so this module does not depend on the whole store interface."""

    async def get_job(self, job_id: str) -> Job | None: ...

    async def update_job(self, job_id: str, *, last_error: str | None = ...,
                         media_path: str | None = ..., media_sha256: str | None = ...,
                         media_size: int | None = ...) -> Job: ...


class StoreJobsView:
    """:class:`JobsView` over a store (what the worker passes to handlers)."""

    def __init__(self, store: _JobRecords) -> None:
        self._store = store

    async def get(self, job_id: str) -> Job | None:
        return await self._store.get_job(job_id)

    async def record_media(self, job_id: str, *, path: str, sha256: str, size: int) -> Job:
        return await self._store.update_job(job_id, media_path=path, media_sha256=sha256,
                                            media_size=size)

    async def record_error(self, job_id: str, message: str) -> Job:
        return await self._store.update_job(job_id, last_error=message)


class SubmitFunction(Protocol):
    """``context.submit``: validate and queue a new job (the follow-up handler uses it).

    Idempotent on ``trace_id``: if a job already has it, that job is returned unchanged.
    """

    def __call__(self, kind: str, params: Mapping[str, Any], *, trace_id: str | None = None,
                 parent_job_id: str | None = None,
                 then: Sequence[Mapping[str, Any]] | None = None,
                 labels: Mapping[str, str] | None = None,
                 callback_url: str | None = None) -> Awaitable[Job]: ...


@dataclasses.dataclass(frozen=True)
class HandlerContext:
    """What a handler run gets besides the job and the transition."""

    #: The process's shared HTTP client (timeouts set; pass ``timeout=`` per call to change).
    http: httpx.AsyncClient
    #: Read a job as it is now; record a downloaded file or an error on it.
    jobs: JobsView
    settings: Settings
    #: Logs with the job id, task id, handler and attempt attached.
    logger: logging.LoggerAdapter[logging.Logger]
    #: This handler's options from ``[handler.NAME]`` / ``PIXHOOK_HANDLER_NAME_*``.
    options: Mapping[str, Any]
    #: The task being run (``attempts`` counts this run; ``idempotency_key`` is stable).
    task: Task
    submit: SubmitFunction

    @property
    def attempt(self) -> int:
        return self.task.attempts


@runtime_checkable
class Handler(Protocol):
    """A handler plugin. Built by its factory with ``(settings, options)``."""

    #: Unique name; tasks are stored under it, so keep it stable.
    name: str
    #: The job states it runs on by default; ``states = [...]`` in its config overrides.
    events: frozenset[JobState]

    def wants(self, job: Job, transition: Transition) -> bool:
        """Whether this transition needs a task at all. Called inside the store's write
        transaction: quick and pure, no I/O."""
        ...

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        """Do the work; see the module docstring for how it may end."""
        ...


class HandlerFactory(Protocol):
    """What an entry point in ``pixhook.handlers`` names: usually a :class:`BaseHandler`
    subclass."""

    def __call__(self, settings: Settings, options: Mapping[str, Any]) -> Handler: ...


#: A handler's concurrency limit unless it declares its own (``concurrency``): handlers mostly
#: wait on the network, so a worker runs many of their tasks at once, and four handlers at this
#: limit fit the 64 slots of ``PIXHOOK_TASK_CONCURRENCY`` without taking each other's.
DEFAULT_HANDLER_CONCURRENCY: Final = 16


class BaseHandler:
    """A convenient base: keeps ``settings`` and ``options``, runs on every final state, and
    wants every transition it is configured for."""

    name: ClassVar[str] = ""
    events: ClassVar[frozenset[JobState]] = TERMINAL_STATES
    #: Handlers whose task for the same transition must finish first (e.g. Slack links the
    #: downloaded file, so it runs after ``download``). Unknown or disabled names are ignored.
    after: ClassVar[tuple[str, ...]] = ()
    #: Most runs of this handler one worker has under way at once (within
    #: ``PIXHOOK_TASK_CONCURRENCY``); ``concurrency = N`` in its config overrides. Lower it
    #: for a handler that is heavy on CPU or memory, or whose peer takes only a few calls.
    concurrency: ClassVar[int] = DEFAULT_HANDLER_CONCURRENCY

    def __init__(self, settings: Settings, options: Mapping[str, Any]) -> None:
        self.settings = settings
        self.options = options

    def wants(self, job: Job, transition: Transition) -> bool:
        return True

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class ReportedVideo:
    """What PixVerse said about the video in the message behind a transition (webhook body or
    polled record); fields are empty when the message did not carry them. (Not the store's
    ``TransitionResult``, which says what recording a transition did.)"""

    url: str = ""
    size: float | None = None
    credits: int | None = None
    has_audio: bool | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict)


def reported_video(transition: Transition) -> ReportedVideo:
    """Read the video URL, size and credits from a transition's payload, whatever its source."""
    try:
        raw = json.loads(transition.payload or "{}")
    except ValueError:
        return ReportedVideo()
    if not isinstance(raw, dict):
        return ReportedVideo()
    url = raw.get("url")
    size = raw.get("size")
    credits = raw.get("credits", raw.get("credit"))
    has_audio = raw.get("has_audio")
    return ReportedVideo(
        url=url if isinstance(url, str) else "",
        size=size if isinstance(size, int | float) and not isinstance(size, bool) else None,
        credits=credits if isinstance(credits, int) and not isinstance(credits, bool) else None,
        has_audio=has_audio if isinstance(has_audio, bool) else None,
        raw=raw,
    )


def media_url(settings: Settings, job_id: str) -> str | None:
    """pixhook's own signed, expiring link (``GET /media/{token}``, valid for
    ``PIXHOOK_MEDIA_LINK_TTL``) to a job's downloaded video; ``None`` without
    ``PIXHOOK_PUBLIC_URL``. Whether the video is there is for the caller to check
    (``job.media_path``)."""
    return MediaLinks(settings).url(job_id)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header, in either of its forms (delta seconds
    or an HTTP date); ``None`` when it is absent or unreadable, never negative. Callers cap it
    as suits them (``Retry(after=min(seconds, cap))``)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; a naive parse means it said so
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
