"""The reconciler: polling only as a fallback for webhooks that did not come.

Each pass asks the store for jobs PixVerse owes news about and has been silent on for
``PIXHOOK_WEBHOOK_GRACE`` seconds (an indexed query, so a pass costs what the overdue jobs
cost, not the whole table), asks ``GET /video/result/{id}`` (or ``/image/result``) about
each, and feeds the answer through the same transition function as a webhook, with source
``poll``. When webhooks flow, no job is ever overdue and no status call is made.

Backoff per job: after a poll that brings no news the next one waits a quarter of the time
the job has been generating, at least the grace and at most an hour; a job past
``PIXHOOK_POLL_DEADLINE`` is marked ``failed``. ``PIXHOOK_POLL_MODE=always`` polls every
open job each pass (grace = the pass interval); ``off`` never polls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from service import tracing
from service.lifecycle import JobState, TransitionSource, state_from_pixverse
from service.metrics import Metrics
from service.pixverse import errors
from service.pixverse.client import PixVerseClient
from service.settings import Settings
from service.store import Job, Store

logger = logging.getLogger(__name__)

#: Longest wait between two polls of one job, in seconds.
MAX_POLL_BACKOFF_SECONDS: Final = 3600.0
#: Jobs looked at per pass, at most.
PASS_LIMIT: Final = 200
IMAGE_KINDS: Final = frozenset({"image_template"})


class Reconciler:
    """Polls overdue jobs; run :meth:`run` as a background task."""

    def __init__(self, store: Store, client: PixVerseClient, settings: Settings, *,
                 clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None) -> None:
        self._store = store
        self._client = client
        self._settings = settings
        self._clock = clock
        #: Status calls made to PixVerse since start (a metric; zero while webhooks flow).
        self.status_calls = 0
        #: Where polls and transitions are also counted (``None``: nowhere).
        self.metrics = metrics

    async def run(self, stop: asyncio.Event) -> None:
        """Pass after pass until ``stop``; a failed pass is logged and the loop goes on."""
        interval = self._settings.reconcile_interval
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.run_once()
            except Exception:
                logger.exception("reconciler pass failed")
            # Like arq's poll(): the pass's own run time comes off the next sleep.
            remaining = max(0.0, interval - (time.monotonic() - started))
            try:
                await asyncio.wait_for(stop.wait(), timeout=remaining)
            except TimeoutError:
                pass

    async def run_once(self) -> int:
        """One pass; returns the number of status calls made."""
        mode = self._settings.poll_mode
        if mode == "off":
            return 0
        grace = (self._settings.reconcile_interval if mode == "always"
                 else self._settings.webhook_grace)
        now = self._clock()
        # Claimed, not just read: other replicas' reconcilers skip these until the hold ends
        # (a poll that learns nothing sets its own next_poll_at after it).
        jobs = await self._store.claim_overdue(now, grace, hold_seconds=grace, limit=PASS_LIMIT)
        # A few calls at once: at PixVerse's 100-300 ms a call, one at a time would make a
        # full pass of PASS_LIMIT jobs last a minute.
        slots = asyncio.Semaphore(self._settings.reconcile_concurrency)

        async def visit(job: Job) -> bool:
            async with slots:
                return await self._visit(job, now, grace)

        outcomes = await asyncio.gather(*(visit(job) for job in jobs), return_exceptions=True)
        for job, outcome in zip(jobs, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if not isinstance(outcome, Exception):
                    raise outcome  # cancellation and the like
                logger.error("reconciling job %s failed: %s", job.id, outcome,
                             exc_info=outcome, extra={"action": "poll", "job_id": job.id})
        return sum(outcome is True for outcome in outcomes)

    async def _visit(self, job: Job, now: float, grace: float) -> bool:
        """Settle one overdue job; True if that took a status call."""
        if job.video_id is None:
            return False  # not accepted yet: the submitter owns it
        if now - job.created_at > self._settings.poll_deadline:
            await self._apply(job, JobState.FAILED,
                              {"error": "no result before PIXHOOK_POLL_DEADLINE"})
            return False
        await self._poll(job, job.video_id, now, grace)
        return True

    async def _poll(self, job: Job, video_id: int, now: float, grace: float) -> None:
        started_ns = time.time_ns()
        self.status_calls += 1
        if self.metrics is not None:
            self.metrics.record_status_poll()
        try:
            if job.kind in IMAGE_KINDS:
                image = await self._client.image_result(video_id)
                status, payload = image.status, dict(image.raw)
            else:
                video = await self._client.video_result(video_id)
                status, payload = video.status, dict(video.raw)
            proposed = state_from_pixverse(status)
        except errors.NotFoundError as exc:
            await self._apply(job, JobState.FAILED, {"error": f"PixVerse: {exc}"})
            return
        except (errors.PixVerseError, ValueError) as exc:
            logger.warning("poll of job %s failed: %s", job.id, exc,
                           extra={"action": "poll", "job_id": job.id})
            await self._store.update_job(job.id, next_poll_at=now + grace)
            return
        polled = await self._apply(job, proposed, payload, started_ns=started_ns)
        if not polled.is_terminal:
            silent_for = now - job.state_changed_at
            backoff = min(MAX_POLL_BACKOFF_SECONDS, max(grace, silent_for / 4))
            await self._store.update_job(job.id, next_poll_at=now + backoff)

    async def _apply(self, job: Job, state: JobState, payload: dict[str, object], *,
                     started_ns: int | None = None) -> Job:
        write_started_ns = time.time_ns()
        result = await self._store.apply_transition(
            job.id, state, source=TransitionSource.POLL, payload=payload)
        if job.video_id is not None:
            tracing.record_transition("pixverse.poll", result, video_id=job.video_id,
                                      started_ns=started_ns or write_started_ns,
                                      write_started_ns=write_started_ns)
        if result.applied:
            logger.info("poll moved job %s to %s", job.id, state.value,
                        extra={"action": "poll", "job_id": job.id})
        return result.job
