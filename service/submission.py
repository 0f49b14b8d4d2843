"""Submission: jobs go to PixVerse exactly once, whatever fails on the way.

:meth:`Submitter.submit` validates the request and commits the job with its ``Ai-trace-id``
*before* PixVerse is called; the loop in :meth:`Submitter.run` then sends due jobs:

* success -> the video id is stored and the job moves to ``generating``, in one transaction;
* an **ambiguous** failure (timeout, reset, 5xx, 500069, 429, an unreadable answer) -> the job
  stays ``submitting`` and is sent again later with the **same trace id**, so PixVerse answers
  with the video it already made instead of making a second one;
* 500044, or the local ``PIXHOOK_MAX_IN_FLIGHT`` limit -> the job goes back to ``queued`` and
  waits for a slot; after a 500044 (or a 429) no new job is sent until PixVerse's wait has
  passed, so what PixVerse accepts sets the pace, not a fixed batch;
* any other PixVerse error -> ``rejected``, with the ErrCode and message in ``last_error``;
* anything unexpected (a bug, an answer of an unexpected shape, the store failing) -> counted
  like an ambiguous failure: ``last_error`` names it, the job is sent again later with the same
  trace id, and it is ``rejected`` once ``PIXHOOK_SUBMIT_MAX_ATTEMPTS`` attempts failed.

``next_attempt_at`` doubles as a lease on an attempt under way: if the process dies mid-call,
the job becomes due again once the lease runs out, and is re-sent with its trace id. The claim
that leases a job counts its attempt (``attempts``) in the same write, before the call.

A cancelled job (:meth:`Store.cancel_job`) is never claimed again, and every write here after a
claim is made ``unless_cancelled``: if the job is cancelled while its create call is in flight,
PixVerse's answer only joins the job's history (as ignored) and changes nothing else.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Unpack

from service import tracing
from service.lifecycle import JobState, TransitionSource, state_from_pixverse
from service.metrics import Metrics
from service.pixverse import errors
from service.pixverse.client import PixVerseClient
from service.pixverse.models import (
    REQUEST_TYPES,
    VIDEO_INPUT_FIELD,
    PixVerseRequest,
    takes_video_input,
)
from service.settings import Settings
from service.store import (
    ConstraintError,
    IdempotencyKey,
    Job,
    JobCancelledError,
    JobUpdate,
    Store,
    WebhookDelivery,
)

logger = logging.getLogger(__name__)

#: Seconds between passes when nothing wakes the loop (a slot may free up, a retry come due).
SUBMIT_INTERVAL_SECONDS: Final = 1.0
#: First retry delay after an ambiguous failure, doubled per attempt up to the cap.
RETRY_BASE_SECONDS: Final = 1.0
RETRY_CAP_SECONDS: Final = 60.0
#: An attempt's lease is this many times the client's timeout: the call cannot outlive its
#: timeout, and the rest is margin for the bookkeeping around it. After a crash, a job caught
#: mid-submission waits out the lease before it is retried (with the same trace id).
LEASE_TIMEOUTS: Final = 2.0
#: Attempts sent to PixVerse at once, at most: the PixVerse client's connection pool (httpx's
#: default, 100 connections), so an attempt waits for PixVerse, not for a connection. It is a
#: ceiling, not a batch: a slot is refilled as soon as its attempt ends. What limits submission
#: is PixVerse's answers (500044 and 429 hold new attempts back, below) and
#: ``PIXHOOK_MAX_IN_FLIGHT``.
MAX_CONCURRENT_ATTEMPTS: Final = 100
#: Longest description of an unexpected failure kept in ``last_error``.
MAX_UNEXPECTED_CHARS: Final = 300


def build_request(kind: str, params: Mapping[str, Any], *,
                  strict: bool = False) -> PixVerseRequest:
    """The typed request for a job kind; raises ``InvalidRequest`` naming every bad field.

    Params pixhook does not know are kept and sent to PixVerse as given (see
    :func:`param_warnings`); ``strict`` (``PIXHOOK_PIXVERSE_STRICT``) refuses them, and applies
    the rules that rest on weaker sources (:mod:`service.pixverse.validation`).
    """
    request_type = REQUEST_TYPES.get(kind)
    if request_type is None:
        raise errors.InvalidRequest("kind", f"{kind!r} is not a PixVerse generation kind",
                                    allowed=tuple(REQUEST_TYPES))
    return request_type.from_params(params, strict=strict)


def param_warnings(job: Job) -> list[str]:
    """One line per param of the job (or of its ``then`` steps) pixhook does not know: it
    is stored with the job and sent to PixVerse verbatim, and PixVerse decides (REFERENCE.md
    §14: PixVerse adds fields often). The create answer reports these as ``warnings``."""
    found = []
    for where, kind, params in [("params", job.kind, job.params)] + [
            (f"then[{i}].params", step.get("kind"), step.get("params") or {})
            for i, step in enumerate(job.then)]:
        request_type = REQUEST_TYPES.get(kind) if isinstance(kind, str) else None
        if request_type is None or not isinstance(params, Mapping):
            continue
        for name in request_type.unknown_fields(params):
            found.append(f"{where}.{name}: not a field pixhook knows for {kind}; it is sent "
                         "to PixVerse as given")
    return found


def check_then(steps: Sequence[Mapping[str, Any]] | None, *,
               strict: bool = False) -> list[dict[str, Any]]:
    """Validate follow-up steps ``[{"kind": ..., "params": {...}}]`` now, so a chain fails at
    submission rather than halfway: each step must take a video (``source_video_id``, wired
    from the step before once it succeeds) and its params must be valid with one."""
    checked = []
    for i, step in enumerate(steps or ()):
        if not isinstance(step, Mapping) or not isinstance(step.get("kind"), str):
            raise errors.InvalidRequest(f"then[{i}]", 'must be {"kind": ..., "params": {...}}')
        kind = step["kind"]
        if kind not in REQUEST_TYPES:
            raise errors.InvalidRequest(f"then[{i}].kind", f"{kind!r} is unknown",
                                        allowed=tuple(REQUEST_TYPES))
        if not takes_video_input(kind):
            raise errors.InvalidRequest(
                f"then[{i}].kind", f"{kind!r} does not take a video, so it cannot follow a step",
                allowed=tuple(k for k in REQUEST_TYPES if takes_video_input(k)))
        params = step.get("params", {})
        if not isinstance(params, Mapping):
            raise errors.InvalidRequest(f"then[{i}].params", "must be an object")
        if VIDEO_INPUT_FIELD in params:
            raise errors.InvalidRequest(f"then[{i}].params.{VIDEO_INPUT_FIELD}",
                                        "is filled in from the step before; leave it out")
        try:
            # A stand-in id: the real one is known once the step before succeeds.
            build_request(kind, {**params, VIDEO_INPUT_FIELD: 1}, strict=strict)
        except errors.InvalidRequest as exc:
            raise exc.prefixed(f"then[{i}].params.") from exc
        checked.append({"kind": kind, "params": dict(params)})
    return checked


def _is_ambiguous(exc: errors.PixVerseError) -> bool:
    """Whether PixVerse may have created the job although the call failed."""
    if isinstance(exc, errors.ConcurrencyLimitError):
        return False  # a definite "not now": nothing was created
    if isinstance(exc, errors.UnknownAPIError) and exc.err_code is None:
        return True  # an answer that is not an envelope: we cannot tell
    return exc.retryable


class Submitter:
    """Commits jobs and sends them to PixVerse; run :meth:`run` as a background task."""

    def __init__(self, store: Store, client: PixVerseClient, settings: Settings, *,
                 client_timeout: float = 30.0,
                 clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None) -> None:
        self._store = store
        self._client = client
        self._settings = settings
        self._lease = client_timeout * LEASE_TIMEOUTS
        self._clock = clock
        self._wake = asyncio.Event()
        #: Jobs with an attempt under way in this process (at most MAX_CONCURRENT_ATTEMPTS:
        #: the claim asks the store for no more than the free slots).
        self._attempting: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        #: No new attempt starts before this time: PixVerse said it is full (500044) or asked
        #: us to slow down (429). Sending more meanwhile would only earn the same answer.
        self.hold_until = 0.0
        #: Whether the last pass took as many jobs as it asked for (more may be due at once).
        self._more_due = False
        #: Where created jobs and transitions are counted (``None``: nowhere).
        self.metrics = metrics

    async def submit(
        self,
        kind: str,
        params: Mapping[str, Any],
        *,
        callback_url: str | None = None,
        then: Sequence[Mapping[str, Any]] | None = None,
        labels: Mapping[str, str] | None = None,
        trace_id: str | None = None,
        parent_job_id: str | None = None,
    ) -> Job:
        """Validate and commit a job; it is sent to PixVerse by the loop, soon after.

        With a ``trace_id`` the call is idempotent: if a job already has that trace id, it is
        returned as it is (a follow-up step replayed after a crash makes no second job).
        Params pixhook does not know are stored and sent as given; :func:`param_warnings`
        lists them.
        """
        steps = self.validate(kind, params, then)
        try:
            job = await self._store.create_job(
                kind=kind, params=dict(params), trace_id=trace_id, labels=labels,
                callback_url=callback_url, then=steps, parent_job_id=parent_job_id,
            )
        except ConstraintError:
            existing = await self._store.get_job_by_trace_id(trace_id) if trace_id else None
            if existing is None:
                raise
            return existing
        self._queued(job)
        return job

    async def submit_once(
        self,
        key: IdempotencyKey,
        kind: str,
        params: Mapping[str, Any],
        *,
        callback_url: str | None = None,
        then: Sequence[Mapping[str, Any]] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> tuple[Job, bool]:
        """:meth:`submit` under an idempotency key (``POST /api/jobs`` with
        ``Idempotency-Key``): the job and ``False`` the first time; the job as it was created
        and ``True`` when the same request came with the key before. Raises
        ``IdempotencyKeyReusedError`` when the key came with another request. A request that
        fails validation claims nothing, so its key can be used again.
        """
        steps = self.validate(kind, params, then)
        job, replayed = await self._store.create_job_once(
            key, kind=kind, params=dict(params), labels=labels, callback_url=callback_url,
            then=steps)
        if not replayed:
            self._queued(job)
        return job, replayed

    def validate(self, kind: str, params: Mapping[str, Any],
                 then: Sequence[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
        """Check a job before it is committed (``InvalidRequest`` names every bad field, the
        job's first); returns its checked ``then`` steps."""
        strict = self._settings.pixverse_strict
        problems: list[errors.InvalidRequest] = []
        steps: list[dict[str, Any]] = []
        try:
            build_request(kind, params, strict=strict)
        except errors.InvalidRequest as exc:
            problems.append(exc)
        try:
            steps = check_then(then, strict=strict)
        except errors.InvalidRequest as exc:
            problems.append(exc)
        if problems:
            raise errors.InvalidRequest.combine(problems)
        return steps

    def _queued(self, job: Job) -> None:
        if self.metrics is not None:
            self.metrics.record_job_created()
        logger.info("job %s (%s) queued", job.id, job.kind,
                    extra={"action": "submit", "job_id": job.id})
        self.wake()

    def wake(self) -> None:
        """Run a pass now (a job was added, or a slot freed)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Send due jobs until ``stop`` is set; a failed pass is logged and the loop goes on."""
        while not stop.is_set():
            # Cleared before the pass, so a job added or an attempt ended meanwhile still wakes
            # the wait below.
            self._wake.clear()
            self._more_due = False
            try:
                await self.run_once()
            except Exception:
                logger.exception("submission pass failed")
            if self._more_due:
                continue  # the pass was full: take the next due jobs at once
            held = self.hold_until - self._clock()
            waiters = [asyncio.ensure_future(stop.wait())]
            if held <= 0:
                waiters.append(asyncio.ensure_future(self._wake.wait()))
            await asyncio.wait(waiters, timeout=SUBMIT_INTERVAL_SECONDS if held <= 0 else
                               min(SUBMIT_INTERVAL_SECONDS, held),
                               return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        await self.drain()

    async def drain(self) -> None:
        """Wait for attempts under way (used at shutdown and by tests)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run_once(self) -> int:
        """Claim due jobs from the store (within the in-flight limit, atomically across every
        process sharing it) and start an attempt for each; return how many."""
        free = MAX_CONCURRENT_ATTEMPTS - len(self._attempting)
        if free <= 0 or self._clock() < self.hold_until:
            return 0
        claimed = await self._store.claim_submissions(
            self._clock(), limit=free, lease_seconds=self._lease,
            max_in_flight=self._settings.max_in_flight)
        self._more_due = len(claimed) == free
        started = 0
        for claim in claimed:
            job = claim.job
            if job.id in self._attempting:
                # Still under way here (its lease ran out early); let it finish. The claim
                # counted one attempt more; the one under way writes its own count if it fails.
                continue
            self._attempting.add(job.id)
            task = asyncio.create_task(self._attempt(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    async def _attempt(self, job: Job) -> None:
        try:
            await self._send(job)
        except JobCancelledError:
            logger.info("job %s was cancelled while it was being sent; PixVerse's answer "
                        "changes nothing", job.id, extra={"action": "submit", "job_id": job.id})
        except Exception as exc:
            logger.exception("submitting job %s failed unexpectedly", job.id,
                             extra={"action": "submit", "job_id": job.id})
            await self._unexpected(job, exc)
        finally:
            self._attempting.discard(job.id)
            self.wake()  # its slot is free

    async def _unexpected(self, job: Job, exc: Exception) -> None:
        """Count an attempt that failed in a way nothing in :meth:`_send` expected, like an
        ambiguous failure: PixVerse may or may not have the job, so it is sent again later
        with the same trace id, and given up (``rejected``) at the attempts limit."""
        # The claim counted this attempt; written as a value, so it is counted once.
        attempts = job.attempts
        error = f"unexpected {type(exc).__name__}: {exc}"[:MAX_UNEXPECTED_CHARS]
        try:
            current = await self._store.get_job(job.id)
            if current is None or current.video_id is not None or current.state not in (
                    JobState.QUEUED, JobState.SUBMITTING):
                return  # accepted by PixVerse (webhooks and polls take over), or finished
            await self._retry_later(job, attempts, error, give_up=JobState.REJECTED)
        except JobCancelledError:
            pass  # cancelled meanwhile: nothing left to count
        except Exception:
            logger.exception("job %s: recording the failure failed too; it is tried again "
                             "when its lease runs out", job.id,
                             extra={"action": "submit", "job_id": job.id})

    async def _send(self, job: Job) -> None:
        try:
            request = build_request(job.kind, job.params)
        except errors.InvalidRequest as exc:
            # Nothing was sent: the attempt the claim counted is taken back.
            await self._finish(job, JobState.REJECTED, f"invalid request: {exc}",
                               attempts=job.attempts - 1)
            return
        # The claim moved the job to submitting, leased it (next_attempt_at) and counted this
        # attempt (attempts), in one write.
        attempts = job.attempts
        try:
            with tracing.span("pixverse.submit", ai_trace_id=job.trace_id, attributes={
                    "pixhook.job_id": job.id, "pixhook.kind": job.kind,
                    "pixhook.attempt": attempts}) as span:
                submission = await self._client.submit(request, trace_id=job.trace_id)
                if span is not None:
                    span.set_attribute("pixverse.video_id", str(submission.job_id))
        except errors.ConcurrencyLimitError as exc:
            self._hold(exc.retry_after or errors.DEFAULT_CONCURRENCY_RETRY_AFTER)
            await self._requeue(job, exc)
        except errors.PixVerseError as exc:
            if isinstance(exc, errors.RateLimitedError):
                self._hold(exc.retry_after or RETRY_BASE_SECONDS)
            if _is_ambiguous(exc):
                await self._retry_later(job, attempts, _describe(exc),
                                        retry_after=getattr(exc, "retry_after", None))
            else:
                await self._finish(job, JobState.REJECTED, _describe(exc))
        else:
            # The video id and ``generating`` in one transaction, which also reads the
            # orphans to adopt. Cancelled during the call: PixVerse made the video (its
            # credits are spent), but the job stays rejected; its history keeps the answer,
            # as ignored, and JobCancelledError is raised.
            orphans = await self._store.accept_submission(
                job.id, submission.job_id, payload=dict(submission.raw))
            logger.info("job %s accepted by PixVerse as %s", job.id, submission.job_id,
                        extra={"action": "submit", "job_id": job.id})
            await self._adopt_orphans(job, orphans)

    async def _adopt_orphans(self, job: Job, orphans: Sequence[WebhookDelivery]) -> None:
        """Apply webhooks that arrived before PixVerse's answer told us the video id.

        This happens when a create call failed ambiguously but PixVerse made the video: its
        webhook can beat the retry that reveals the id. Such a delivery was kept as an orphan
        (and answered ``ok``); it belongs to this job now. ``orphans`` (oldest first) were read
        in the transaction that stored the id, under the id's lock, so they are every orphan
        that the receiver did not already match to the job.
        """
        for delivery in orphans:
            try:
                status = int(json.loads(delivery.body)["status"])
                proposed = state_from_pixverse(status)
            except (ValueError, KeyError, TypeError):
                continue
            await self._store.apply_transition(
                job.id, proposed, source=TransitionSource.WEBHOOK,
                payload=delivery.body.decode("utf-8", "replace"),
                received_at=delivery.received_at,
                delivery_id=delivery.id,
            )
            logger.info("job %s adopted orphan webhook %s (status %s)", job.id, delivery.id,
                        status, extra={"action": "submit", "job_id": job.id})

    def _hold(self, seconds: float) -> None:
        """Start no new attempt for ``seconds`` (attempts under way go on)."""
        self.hold_until = max(self.hold_until, self._clock() + seconds)
        logger.info("PixVerse is full or limiting us; no new submissions for %.1f s", seconds,
                    extra={"action": "submit"})

    async def _requeue(self, job: Job, exc: errors.ConcurrencyLimitError) -> None:
        delay = exc.retry_after or errors.DEFAULT_CONCURRENCY_RETRY_AFTER
        await self._update(job, last_error=_describe(exc), next_attempt_at=self._clock() + delay)
        await self._transition(job, JobState.QUEUED, {"err_code": exc.err_code})

    async def _retry_later(self, job: Job, attempts: int, error: str, *,
                           retry_after: float | None = None,
                           give_up: JobState = JobState.FAILED) -> None:
        """Send the job again later (same trace id), or end it in ``give_up`` once it has
        had ``attempts`` (written as they are, so a failure is counted once)."""
        if attempts >= self._settings.submit_max_attempts:
            what = "ambiguous attempts" if give_up is JobState.FAILED else "attempts"
            await self._finish(job, give_up, f"gave up after {attempts} {what}: {error}",
                               attempts=attempts)
            return
        delay = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** (attempts - 1))
        delay *= random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security
        if retry_after is not None:
            delay = max(delay, retry_after)
        logger.warning("job %s: attempt %d failed (%s); retrying in %.1f s with the same "
                       "trace id", job.id, attempts, error, delay,
                       extra={"action": "submit", "job_id": job.id})
        await self._update(job, attempts=attempts, last_error=error,
                           next_attempt_at=self._clock() + delay)

    async def _finish(self, job: Job, state: JobState, error: str, *,
                      attempts: int | None = None) -> None:
        fields: JobUpdate = {"last_error": error, "next_attempt_at": None}
        if attempts is not None:
            fields["attempts"] = attempts
        await self._update(job, **fields)
        await self._transition(job, state, {"error": error})
        logger.warning("job %s %s: %s", job.id, state.value, error,
                       extra={"action": "submit", "job_id": job.id})

    async def _update(self, job: Job, **fields: Unpack[JobUpdate]) -> None:
        """Write submission bookkeeping, unless the job was cancelled meanwhile (then
        ``JobCancelledError``: an answer after a cancel changes nothing)."""
        await self._store.update_job(job.id, unless_cancelled=True, **fields)

    async def _transition(self, job: Job, state: JobState,
                          payload: Mapping[str, Any] | None) -> None:
        await self._store.apply_transition(job.id, state, source=TransitionSource.SUBMIT,
                                           payload=payload)


def _describe(exc: errors.PixVerseError) -> str:
    if isinstance(exc, errors.APIError) and exc.err_code is not None:
        return f"ErrCode {exc.err_code}: {exc.err_msg}"
    return str(exc)
