"""Webhooks written in batches, on both databases: the rules once, the SQL per connector.

Webhook ingest is pixhook's hot path. Done one webhook at a time it costs a nonce claim, a job
lookup, three inserts and an update, each a statement with its own binding, preparation and,
on PostgreSQL, its own network round trip; under load that per-statement work, not the rows,
was most of the cost (``scripts/profile_ingest``, ``scripts/bench_ingest``). So the webhooks
handed to :meth:`Webhooks.ingest_webhook` while a burst is read (the loop turns until the
batch stops growing, 2 ms at most) are written together, as one transaction
(:class:`WebhookBatcher`):

1. the connector claims the batch's nonces and reads its jobs, set-based (which nonces were
   used before, and each video id's job, locked where the database needs it);
2. :func:`plan` decides every webhook in order, by the ledger's rules
   (:func:`~service.store.ledger.step_transition`, :func:`~service.store.ledger.plan_tasks`),
   as if they came one after another (a nonce or a job seen twice in one batch included),
   and collects the rows in a :class:`BatchWrites`;
3. the connector writes those rows, set-based, and commits; only then is any caller answered.

What each database does in steps 1 and 3 is its connector's ``write_webhooks``:
:mod:`service.store.sqlite_webhook_batch` (ids assigned ahead by the one writer, multi-row
statements) and :mod:`service.store.postgres_webhook_batch` (locks, arrays and two pipelined
round trips). A batch that fails is written again one webhook at a time, so only the webhook
at fault fails.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from service.lifecycle import JobState, TransitionSource
from service.store import records
from service.store.base import StoreBase
from service.store.deliveries import safe_headers
from service.store.errors import StorageError
from service.store.ledger import idempotency_key, plan_tasks, step_transition
from service.store.records import (
    DeliveryOutcome,
    Job,
    Task,
    TaskPlanner,
    TaskState,
    Transition,
    TransitionResult,
    WebhookDelivery,
    WebhookIngest,
)
from service.store.writer import WriterStats, settle


@dataclass(frozen=True, slots=True)
class Webhook:
    """One verified webhook, as :meth:`Webhooks.ingest_webhook` was given it."""

    body: bytes
    headers: Mapping[str, str]
    nonce: str
    timestamp: float
    received_at: float
    video_id: int
    proposed: JobState


#: Written by position: the row tuples of :class:`BatchWrites` follow these orders.
NONCE_COLUMNS: Final = ("nonce", "timestamp", "claimed_at")
DELIVERY_COLUMNS: Final = ("id", "received_at", "outcome", "video_id", "job_id", "nonce",
                           "timestamp", "headers", "body", "error")
TRANSITION_COLUMNS: Final = ("id", "job_id", "from_state", "to_state", "outcome", "source",
                             "reason", "payload", "delivery_id", "received_at", "recorded_at")
TASK_COLUMNS: Final = ("id", "job_id", "transition_id", "handler", "idempotency_key", "state",
                       "run_after", "created_at", "updated_at")
#: The job columns a transition may change.
JOB_UPDATE_COLUMNS: Final = ("id", "state", "state_changed_at", "last_event_at",
                             "next_poll_at", "updated_at")


@dataclass(slots=True)
class BatchWrites:
    """The rows a batch writes, collected in order, with the ids they are given (the real ids
    on SQLite; on PostgreSQL stand-ins until the database numbers the rows)."""

    next_delivery: int = 1
    next_transition: int = 1
    next_task: int = 1
    nonces: list[tuple[Any, ...]] = field(default_factory=list)
    deliveries: list[tuple[Any, ...]] = field(default_factory=list)
    transitions: list[tuple[Any, ...]] = field(default_factory=list)
    #: By job id: a job stepped twice in one batch is written once, as it ended up.
    jobs: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    tasks: list[tuple[Any, ...]] = field(default_factory=list)


def _step(writes: BatchWrites, job: Job, proposed: JobState, *, payload: str,
          received_at: float, delivery_id: int, planner: TaskPlanner | None,
          now: float) -> TransitionResult:
    """One webhook's proposed state for ``job``: the history row, the job's new fields and, if
    applied, its tasks, added to ``writes``."""
    step = step_transition(job, proposed, now=now, received_at=received_at)
    decision, after = step.decision, step.job
    transition = Transition(
        id=writes.next_transition, job_id=job.id, from_state=job.state, to_state=proposed,
        outcome=decision.outcome, source=TransitionSource.WEBHOOK, reason=decision.reason,
        payload=payload, delivery_id=delivery_id, received_at=step.received_at,
        recorded_at=now,
    )
    writes.next_transition += 1
    writes.transitions.append((
        transition.id, job.id, job.state.value, proposed.value, decision.outcome.value,
        transition.source.value, decision.reason, payload, delivery_id, step.received_at, now,
    ))
    writes.jobs[job.id] = (job.id, after.state.value, after.state_changed_at,
                           after.last_event_at, after.next_poll_at, after.updated_at)
    tasks: list[Task] = []
    if decision.applied:
        for handler in plan_tasks(after, transition, planner):
            task = Task(
                id=writes.next_task, job_id=job.id, transition_id=transition.id,
                handler=handler, idempotency_key=idempotency_key(job.id, proposed, handler),
                state=TaskState.PENDING, attempts=0, run_after=now, lease_until=None,
                last_error=None, created_at=now, updated_at=now,
            )
            writes.next_task += 1
            writes.tasks.append((task.id, job.id, transition.id, task.handler,
                                 task.idempotency_key, task.state.value, now, now, now))
            tasks.append(task)
    return TransitionResult(decision, after, transition, tuple(tasks))


def plan(requests: Sequence[Webhook], *, used: set[str], jobs: dict[int, Job],
         writes: BatchWrites, now: float, planner: TaskPlanner | None) -> list[WebhookIngest]:
    """Decide a batch as if its webhooks came one after another: ``used`` holds the nonces
    claimed before it (a nonce used twice in the batch is a duplicate the second time), and
    ``jobs`` each video id's job as the batch found it (updated here as webhooks step it).

    Returns one :class:`WebhookIngest` per request, in order, and fills ``writes``. Raises
    whatever a task planner raised.
    """
    results: list[WebhookIngest] = []
    for request in requests:
        if request.nonce in used:
            results.append(WebhookIngest(DeliveryOutcome.DUPLICATE, None, None))
            continue
        used.add(request.nonce)
        writes.nonces.append((request.nonce, request.timestamp, now))
        job = jobs.get(request.video_id)
        delivery = WebhookDelivery(
            id=writes.next_delivery, received_at=request.received_at,
            outcome=DeliveryOutcome.OK if job is not None else DeliveryOutcome.ORPHAN,
            video_id=request.video_id, job_id=job.id if job is not None else None,
            nonce=request.nonce, timestamp=request.timestamp,
            headers=safe_headers(request.headers), body=bytes(request.body),
            error=None,
        )
        writes.next_delivery += 1
        writes.deliveries.append((
            delivery.id, delivery.received_at, delivery.outcome.value, delivery.video_id,
            delivery.job_id, delivery.nonce, delivery.timestamp,
            records.dumps(delivery.headers), delivery.body, None,
        ))
        if job is None:
            results.append(WebhookIngest(delivery.outcome, delivery, None))
            continue
        result = _step(writes, job, request.proposed,
                       payload=request.body.decode("utf-8", "replace"),
                       received_at=request.received_at, delivery_id=delivery.id,
                       planner=planner, now=now)
        jobs[request.video_id] = result.job
        results.append(WebhookIngest(delivery.outcome, delivery, result))
    return results


#: A connector's set-based write: the webhooks, the store's clock and its planner, to the
#: results in order once committed.
WriteWebhooks = Callable[[Sequence[Webhook], Callable[[], float], TaskPlanner | None],
                         Awaitable[list[WebhookIngest]]]
_Waiting = list[tuple[Webhook, "asyncio.Future[WebhookIngest]"]]


#: How long a batch may wait for the rest of a burst, in seconds (:class:`WebhookBatcher`).
MAX_LINGER: Final = 0.002


class WebhookBatcher:
    """Collects the webhooks handed in while a burst is read and writes them as one batch.

    A batch starts once it stops growing: after the loop turn that handed in its first
    webhook, then after each turn that added more, until a turn adds none, ``max_linger``
    has passed or the batch is full. A lone webhook waits one loop turn. Under load this is
    what makes batches large: the requests of a burst arrive over several loop turns, and a
    batch started at the first one's turn would hold a few of them (under wrk's 16
    connections half the batches held 8 or fewer), each batch paying its statements and
    commit (``scripts/bench_ingest``: 17-25 % more webhooks a second with it).

    :param write: the connector's ``write_webhooks``.
    :param tasks_ready: set when a batch queued tasks (this process's task runner wakes).
    :param max_batch: webhooks in one batch at most.
    :param max_in_flight: batches written at once at most (``None``: no limit). Webhooks that
        arrive while that many are under way wait, and form a larger batch when one ends.
    :param max_linger: how long a growing batch may wait before it starts, in seconds.
    """

    def __init__(self, write: WriteWebhooks, *, tasks_ready: asyncio.Event, max_batch: int,
                 max_in_flight: int | None, clock: Callable[[], float],
                 planner: Callable[[], TaskPlanner | None],
                 max_linger: float = MAX_LINGER) -> None:
        self._write_webhooks = write
        self._tasks_ready = tasks_ready
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._clock = clock
        self._planner = planner
        self._max_linger = max_linger
        self._waiting: _Waiting = []
        #: The pending check of a forming batch (None: no batch is forming).
        self._settling: asyncio.Handle | None = None
        self._linger_until = 0.0
        self._seen = 0
        self._writing: set[asyncio.Task[None]] = set()
        #: Batches formed so far: ``operations`` counts webhooks.
        self.stats = WriterStats()

    async def submit(self, webhook: Webhook) -> WebhookIngest:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[WebhookIngest] = loop.create_future()
        self._waiting.append((webhook, future))
        if self._settling is None and not self._full():
            # A new batch forms; the webhooks of the next loop turns may join it (class
            # docstring). With no slot free, the batch that ends first starts the next: _done.
            self._linger_until = loop.time() + self._max_linger
            self._seen = 0
            self._settling = loop.call_soon(self._start_when_settled)
        ingest = await future
        if ingest.transition is not None and ingest.transition.tasks:
            self._tasks_ready.set()
        return ingest

    async def drain(self) -> None:
        """Write what was handed in (the store is closing)."""
        while self._waiting or self._writing:
            if self._waiting and not self._full():
                self._start()
            await asyncio.wait(self._writing)

    def _full(self) -> bool:
        return self._max_in_flight is not None and len(self._writing) >= self._max_in_flight

    def _start_when_settled(self) -> None:
        """Start the forming batch, unless the last loop turn added to it and it may wait."""
        loop = asyncio.get_running_loop()
        waiting = len(self._waiting)
        if self._seen < waiting < self._max_batch and loop.time() < self._linger_until:
            self._seen = waiting
            self._settling = loop.call_soon(self._start_when_settled)
            return
        self._start()

    def _start(self) -> None:
        if self._settling is not None:
            self._settling.cancel()  # a no-op when it is the one running
            self._settling = None
        while self._waiting and not self._full():
            batch, self._waiting = (self._waiting[:self._max_batch],
                                    self._waiting[self._max_batch:])
            self.stats.count(len(batch))
            task = asyncio.create_task(self._write(batch))
            self._writing.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(functools.partial(self._done, batch))

    def _done(self, batch: _Waiting, task: asyncio.Task[None]) -> None:
        self._writing.discard(task)
        if task.cancelled() or task.exception() is not None:
            # Cancelled (the loop shutting down), perhaps before it began: no caller may be
            # left waiting. Callers already answered are skipped. The database may still
            # commit a batch cancelled mid-way; PixVerse's retry then finds its nonce used.
            lost = StorageError("webhook batch interrupted; it may not have been written")
            for _, future in batch:
                settle(future, lost, None)
        if self._waiting and self._settling is None:
            self._start()  # webhooks that waited for a free slot

    async def _write(self, batch: _Waiting) -> None:
        """Write a batch as one transaction. If it fails, write each webhook alone, so only
        the webhook at fault fails (its caller answers 503; PixVerse retries)."""
        webhooks = [webhook for webhook, _ in batch]
        try:
            results = await self._write_webhooks(webhooks, self._clock, self._planner())
        except Exception as exc:  # noqa: BLE001 -- the caller gets whatever it raised
            if len(batch) == 1:
                settle(batch[0][1], exc, None)
                return
            await asyncio.gather(*(self._write([item]) for item in batch))
            return
        for (_, future), result in zip(batch, results, strict=True):
            settle(future, None, result)


class Webhooks(StoreBase):
    """Verified webhooks in: the store's entry point for the receiver."""

    #: Made by :class:`~service.store.store.Store` with the connector's ``write_webhooks``.
    _batches: WebhookBatcher

    @property
    def ingest_stats(self) -> WriterStats:
        """Webhook batches formed so far (``operations`` counts webhooks)."""
        return self._batches.stats

    async def ingest_webhook(self, *, body: bytes, headers: Mapping[str, str], nonce: str,
                             timestamp: float, received_at: float, video_id: int,
                             proposed: JobState) -> WebhookIngest:
        """Take one verified PixVerse webhook in a single transaction: claim its nonce, keep
        the delivery, and apply the proposed state to the job with that video id (the
        ledger's rules: :func:`~service.store.ledger.step_transition`).

        All three at once: had the nonce been claimed in a transaction of its own, a crash
        before the transition committed would make PixVerse's retry look like a replay, and
        the event would be lost. The video id's lock orders this lookup against the
        submitter setting the id (:meth:`~service.store.jobs.Jobs.update_job`): either the
        job is found, or this delivery is kept as an orphan before the id commits, and the
        submitter adopts it.

        The webhooks handed in while a burst is read share that transaction, written
        set-based (module docstring); each caller is answered once it committed. If it
        fails, each is written alone, so only the one at fault fails.
        """
        ingest = await self._batches.submit(Webhook(
            body=body, headers=headers, nonce=nonce, timestamp=timestamp,
            received_at=received_at, video_id=video_id, proposed=JobState(proposed)))
        self._observe(ingest.transition)
        return ingest
