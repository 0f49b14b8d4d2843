"""The task runner: takes handler tasks from the store's durable queue and runs them.

Each task is *claimed* with a lease (``PIXHOOK_TASK_LEASE``) that the runner renews while the
handler works. If the process dies, the lease runs out and any runner claims the task again, so
a task runs at least once; a run that lost its lease cannot overwrite the result of the run
that took over (the store checks the attempt number). A task that succeeded is never claimed
again.

How a run ends decides what happens next (see :mod:`service.handler_api`):

==========================  =================================================================
the handler                 the task
==========================  =================================================================
returns                     ``succeeded``
raises ``Retry(after)``     pending again in ``after`` seconds
raises ``PermanentError``   ``dead`` at once
raises ``TransientError``   pending again after exponential backoff with jitter
(or any other exception,
or times out)
runs out of attempts        ``dead``; ``POST /api/tasks/{id}/retry`` revives it
==========================  =================================================================

A task whose job was cancelled (``POST /api/jobs/{id}/cancel``) is not run: it is ``dead`` at
once, with the error ``job cancelled``.

A runner has ``PIXHOOK_TASK_CONCURRENCY`` slots (64) for all handlers together, and each
handler a limit of its own within them (its ``concurrency``, 16 by default): it claims only as
many tasks as the fewest free slots of any handler, passing over the handlers at their limit,
so a slow handler's backlog does not hold the other handlers' tasks back.

Every run is logged with the job id, task id, handler, attempt, outcome and duration, and kept
in the task's history (``task_runs``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import random
import time
from collections.abc import Callable
from typing import Any, Final

import httpx

from service import tracing
from service.handler_api import (
    HandlerContext,
    PermanentError,
    Retry,
    StoreJobsView,
    SubmitFunction,
)
from service.metrics import Metrics
from service.registry import HandlerSet
from service.settings import Settings
from service.store import Job, LeaseLostError, Store, Task, TaskState, Transition

logger = logging.getLogger(__name__)

#: How long a task waits before looking again at the handlers it must run after.
DEFER_SECONDS: Final = 0.25
#: Idle runners look for due tasks (retries whose time came) at least this often.
POLL_INTERVAL_SECONDS: Final = 1.0
#: At shutdown, runs under way get this long to finish before they are cancelled (and their
#: tasks handed back to the queue).
SHUTDOWN_GRACE_SECONDS: Final = 10.0
#: Longest error text kept per run.
MAX_ERROR_CHARS: Final = 2000
#: The error of a task whose job was cancelled before it ran.
CANCELLED_ERROR: Final = "job cancelled"


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with "equal jitter": the n-th retry waits a random time between
    half and all of ``min(cap, base * 2**(n-1))``, so a burst of failures spreads out."""

    max_attempts: int
    base_seconds: float
    cap_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(max(1, settings.task_max_attempts), settings.task_backoff,
                   settings.task_backoff_max)

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap_seconds, self.base_seconds * 2 ** max(0, attempt - 1))
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not security

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts


class TaskRunner:
    """Runs handler tasks; run :meth:`run` as a background task (the worker process)."""

    def __init__(self, store: Store, handlers: HandlerSet, settings: Settings, *,
                 http: httpx.AsyncClient, submit: SubmitFunction,
                 clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None) -> None:
        self._store = store
        self._handlers = handlers
        self._settings = settings
        self._http = http
        self._submit = submit
        self._clock = clock
        self.policy = RetryPolicy.from_settings(settings)
        self._running: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        #: Slots for all handlers together, and each enabled handler's own limit within them.
        self._slots = max(1, settings.task_concurrency)
        self._limits = {name: min(self._slots, subscription.concurrency)
                        for name in handlers.names
                        if (subscription := handlers.get(name)) is not None}
        #: Runs under way by handler.
        self._busy: collections.Counter[str] = collections.Counter()
        #: Finished runs by (handler, outcome): succeeded, retry, dead, deferred, lost.
        self.runs: collections.Counter[tuple[str, str]] = collections.Counter()
        #: Seconds from a task being queued to its first run starting (newest last).
        self.start_delays: collections.deque[float] = collections.deque(maxlen=10_000)
        #: When the runner last looked for work (the readiness check reads it).
        self.heartbeat_at: float | None = None
        #: Where runs and start delays are also counted (``None``: nowhere).
        self.metrics = metrics

    @property
    def busy(self) -> int:
        return len(self._running)

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run tasks until ``stop`` is set, then let runs under way finish."""
        while not stop.is_set():
            # Beat on every turn of the loop, not only when claiming: with every slot busy on
            # long runs the loop only waits, and is still alive.
            self.heartbeat_at = self._clock()
            # Cleared before claiming, so a run that ends while the claim is under way
            # still wakes the wait below.
            self._slot_freed.clear()
            limit, skip = self._claim_plan(self._slots - len(self._running))
            started = 0
            if limit > 0:
                try:
                    started = await self._start(limit, skip)
                except Exception:
                    logger.exception("task pass failed", extra={"action": "task"})
            if limit > 0 and started == limit:
                continue  # there may be more due right now
            waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stop.wait())]
            if limit - started > 0:
                # A slot is free and nothing more is due for it: wait for news or the next
                # due task. The queue's next due task may be one of a handler at its limit,
                # due already, so with such handlers only news or the poll interval wake it.
                idle = POLL_INTERVAL_SECONDS if skip else await self._idle_time()
                waiters.append(asyncio.ensure_future(self._store.wait_for_tasks(idle)))
            if started or limit <= 0 or skip:
                waiters.append(asyncio.ensure_future(self._slot_freed.wait()))
            # Every slot busy (or every handler's): only a finished run can start another, so
            # the queue is not read until one does (a long queue costs nothing while the
            # slots work). The timeout keeps the heartbeat going through long runs.
            await asyncio.wait(waiters, timeout=POLL_INTERVAL_SECONDS,
                               return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        await self.drain(SHUTDOWN_GRACE_SECONDS)

    async def _idle_time(self) -> float:
        """How long to wait for news: until the next retry is due, at most the poll interval
        (which also catches tasks other processes queue)."""
        try:
            due = await self._store.next_task_due()
        except Exception:
            logger.exception("reading the task queue failed", extra={"action": "task"})
            return POLL_INTERVAL_SECONDS
        if due is None:
            return POLL_INTERVAL_SECONDS
        return min(POLL_INTERVAL_SECONDS, max(0.0, due - self._clock()) + 0.001)

    async def run_once(self, limit: int = 10) -> int:
        """Claim up to ``limit`` due tasks (within each handler's limit) and start them;
        return how many were started."""
        count, skip = self._claim_plan(limit)
        return await self._start(count, skip) if count > 0 else 0

    def _claim_plan(self, free: int) -> tuple[int, tuple[str, ...]]:
        """How many tasks to claim with ``free`` slots, and the handlers to pass over (those
        at their limit). The claim is no bigger than the fewest free slots of any other
        handler, so whichever handlers' tasks it returns, none goes over its limit."""
        full = tuple(sorted(name for name, limit in self._limits.items()
                            if self._busy[name] >= limit))
        room = [limit - self._busy[name] for name, limit in self._limits.items()
                if name not in full]
        if self._limits and not room:
            return 0, full
        return max(0, min([free, *room])), full

    async def _start(self, limit: int, skip: tuple[str, ...]) -> int:
        now = self._clock()
        self.heartbeat_at = now
        tasks = await self._store.claim_tasks(now, limit=limit, skip_handlers=skip,
                                              lease_seconds=self._settings.task_lease)
        # A run starts when its claim returns, as when each run read its own job and
        # transition; they are read now for the whole batch, in one read (two reads a task
        # cost as much CPU as the rest of a cheap run). If that read fails, the tasks wait
        # for their leases to run out.
        started = self._clock()
        subjects = await self._store.task_subjects(tasks)
        for task, (job, transition) in zip(tasks, subjects, strict=True):
            running = asyncio.create_task(self._execute(task, job, transition, started))
            self._running.add(running)
            self._busy[task.handler] += 1
            running.add_done_callback(functools.partial(self._finished, task.handler))
        return len(tasks)

    def _finished(self, handler: str, running: asyncio.Task[None]) -> None:
        self._running.discard(running)
        self._busy[handler] -= 1
        self._slot_freed.set()

    def _count(self, handler: str, outcome: str) -> None:
        self.runs[(handler, outcome)] += 1
        if self.metrics is not None:
            self.metrics.record_handler_run(handler, outcome)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for runs under way; after ``timeout`` seconds cancel the rest (their tasks go
        back to the queue)."""
        if not self._running:
            return
        _, pending = await asyncio.wait(set(self._running), timeout=timeout)
        for running in pending:
            running.cancel()
        if pending:
            await asyncio.wait(pending)

    async def run_until_idle(self, timeout: float = 30.0) -> None:
        """Run every due task (and what becomes due meanwhile) until none is left: for tests
        and ``reconcile --once``-style one-shot use."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = await self.run_once()
            await self.drain()
            if not started:
                return
        raise TimeoutError("tasks were still due after the timeout")

    # -- one run -----------------------------------------------------------------------------

    async def _execute(self, task: Task, job: Job | None, transition: Transition | None,
                       started: float) -> None:
        log = logging.LoggerAdapter(logger, {
            "action": "task", "job_id": task.job_id, "task_id": task.id,
            "handler": task.handler, "attempt": task.attempts,
        })
        try:
            await self._run(task, job, transition, started, log)
        except asyncio.CancelledError:
            # Shutting down mid-run: hand the task back so another run need not wait for the
            # lease to expire. Shielded, since we are being cancelled ourselves.
            with contextlib.suppress(Exception):
                await asyncio.shield(self._store.release_task(
                    task.id, attempt=task.attempts, run_after=self._clock()))
            raise
        except LeaseLostError:
            self._count(task.handler, "lost")
            log.warning("task %s (%s, job %s): lease lost; another run owns it now",
                        task.id, task.handler, task.job_id)
        except Exception:
            log.exception("task %s (%s, job %s): bookkeeping failed; the lease will expire "
                          "and it runs again", task.id, task.handler, task.job_id)

    async def _run(self, task: Task, job: Job | None, transition: Transition | None,
                   started: float, log: logging.LoggerAdapter[logging.Logger]) -> None:
        """One run of ``task``, begun at ``started``; ``job`` and ``transition`` as read
        when it was claimed."""
        subscription = self._handlers.get(task.handler)
        if subscription is None:
            await self._store.fail_task(
                task.id, attempt=task.attempts, started_at=started, retry_at=None,
                error=f"handler {task.handler!r} is not enabled here (PIXHOOK_HANDLERS)")
            self._count(task.handler, "dead")
            log.error("task %s: handler %r is not enabled; marked dead", task.id, task.handler)
            return
        if await self._waiting_on_others(task, getattr(subscription.handler, "after", ())):
            await self._store.release_task(task.id, attempt=task.attempts,
                                           run_after=self._clock() + DEFER_SECONDS)
            self._count(task.handler, "deferred")
            return
        if job is None or transition is None:
            await self._store.fail_task(task.id, attempt=task.attempts, started_at=started,
                                        retry_at=None, error="its job or transition is gone")
            return
        if job.cancelled_at is not None:
            # Queued before the job was cancelled. Dead, not succeeded: the handler's work was
            # not done, and the task says why (a retry dies the same way).
            await self._store.fail_task(task.id, attempt=task.attempts, started_at=started,
                                        retry_at=None, error=CANCELLED_ERROR)
            self._count(task.handler, "dead")
            log.info("task %s (%s, job %s): the job was cancelled; not run", task.id,
                     task.handler, task.job_id, extra={"outcome": "dead"})
            return
        # A first run: a manual retry also starts at attempt 1, but the task has an error.
        if task.attempts == 1 and task.last_error is None:
            self.start_delays.append(started - task.created_at)
            if self.metrics is not None:
                self.metrics.record_handler_start(started - task.created_at)
        context = HandlerContext(http=self._http, jobs=StoreJobsView(self._store),
                                 settings=self._settings, logger=log,
                                 options=subscription.options, task=task, submit=self._submit)
        lease_keeper = asyncio.create_task(self._keep_lease(task, log))
        try:
            with tracing.span("pixhook.handler", ai_trace_id=job.trace_id, attributes={
                    "pixhook.job_id": job.id, "pixhook.handler": task.handler,
                    "pixhook.task_id": task.id, "pixhook.attempt": task.attempts,
                    "pixhook.to_state": transition.to_state.value}):
                async with asyncio.timeout(self._settings.task_timeout or None):
                    await subscription.handler.run(job, transition, context)
        except Retry as exc:
            await self._failed(task, started, log, exc, retry_in=exc.after)
        except PermanentError as exc:
            await self._failed(task, started, log, exc, retry_in=None)
        except TimeoutError as exc:
            error = TimeoutError(f"timed out after {self._settings.task_timeout:g} s")
            error.__cause__ = exc
            await self._failed(task, started, log, error,
                               retry_in=self.policy.delay(task.attempts))
        except Exception as exc:
            await self._failed(task, started, log, exc, retry_in=self.policy.delay(task.attempts),
                               unexpected=True)
        else:
            await self._store.complete_task(task.id, attempt=task.attempts, started_at=started)
            self._count(task.handler, "succeeded")
            log.info("task %s %s job %s attempt %d succeeded in %.3f s", task.id, task.handler,
                     task.job_id, task.attempts, self._clock() - started,
                     extra={"outcome": "succeeded", "duration": self._clock() - started})
        finally:
            lease_keeper.cancel()

    async def _failed(self, task: Task, started: float,
                      log: logging.LoggerAdapter[logging.Logger], exc: BaseException, *,
                      retry_in: float | None, unexpected: bool = False) -> None:
        if retry_in is not None and self.policy.exhausted(task.attempts):
            retry_in = None
        error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
        retry_at = None if retry_in is None else self._clock() + retry_in
        await self._store.fail_task(task.id, attempt=task.attempts, started_at=started,
                                    error=error, retry_at=retry_at)
        outcome = "dead" if retry_at is None else "retry"
        self._count(task.handler, outcome)
        duration = self._clock() - started
        then = "dead" if retry_in is None else f"retry in {retry_in:.1f} s"
        log.warning("task %s %s job %s attempt %d failed in %.3f s (%s): %s", task.id,
                    task.handler, task.job_id, task.attempts, duration, then, error,
                    exc_info=unexpected, extra={"outcome": outcome, "duration": duration})

    async def _waiting_on_others(self, task: Task, after: tuple[str, ...]) -> bool:
        """Whether a task this one must follow (same transition) has not finished yet."""
        wanted = {name for name in after if self._handlers.get(name) is not None}
        if not wanted:
            return False
        siblings = await self._store.list_tasks(job_id=task.job_id)
        return any(other.transition_id == task.transition_id and other.handler in wanted
                   and other.state in (TaskState.PENDING, TaskState.RUNNING)
                   for other in siblings)

    async def _keep_lease(self, task: Task, log: logging.LoggerAdapter[logging.Logger]) -> None:
        lease = self._settings.task_lease
        while True:
            await asyncio.sleep(lease / 3)
            try:
                held = await self._store.extend_task_lease(task.id, attempt=task.attempts,
                                                           lease_until=self._clock() + lease)
            except Exception:
                log.exception("task %s: renewing the lease failed", task.id)
                return
            if not held:
                log.warning("task %s: lease lost while running", task.id)
                return
