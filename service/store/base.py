"""The store interface every backend implements, and the records it returns.

The store is the spine of pixhook: the submission module, the webhook receiver and the
reconciler all record what they learn through it, and the task runner takes its work from it.
Business rules (what is forward, what is a duplicate, which tasks a transition triggers and how
they are keyed) live in plain Python (:mod:`service.lifecycle`, :mod:`service.store.planning`);
a backend only stores rows and runs each method in one transaction.

Times are float seconds since the Unix epoch (UTC) everywhere.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self, TypedDict, Unpack

from service.lifecycle import Decision, JobState, Outcome, TransitionSource

#: A decoded JSON object, as stored in ``params``, ``labels`` and ``then``.
JSONObject = dict[str, Any]


class TaskState(enum.StrEnum):
    """Where a handler task is in the durable queue."""

    PENDING = "pending"  # waiting for ``run_after``
    RUNNING = "running"  # claimed by a runner until ``lease_until``; reclaimed after that
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # gave up; ``last_error`` says why


class TaskRunOutcome(enum.StrEnum):
    """How one run of a task ended."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"  # failed; pending again until ``run_after``
    DEAD = "dead"  # failed for good (permanent error, or out of attempts)


class DeliveryOutcome(enum.StrEnum):
    """What the webhook receiver made of one delivery."""

    OK = "ok"
    BAD_SIGNATURE = "bad_signature"
    STALE = "stale"  # timestamp outside the tolerance window
    DUPLICATE = "duplicate"  # nonce seen before
    ORPHAN = "orphan"  # valid, but no job has that video id
    MALFORMED = "malformed"  # body or headers unreadable


@dataclass(frozen=True, slots=True)
class Job:
    """One generation request and where it stands."""

    id: str
    kind: str
    state: JobState
    #: The request parameters as submitted (a JSON object).
    params: JSONObject
    #: Sent to PixVerse as ``Ai-trace-id``; unique per job, so a retried submit is idempotent.
    trace_id: str
    #: PixVerse's video id once known (a 64-bit integer, stored exactly).
    video_id: int | None
    labels: dict[str, str]
    callback_url: str | None
    #: Follow-up steps to run when this job succeeds (a list of JSON objects).
    then: list[JSONObject]
    parent_job_id: str | None
    #: Submission attempts so far.
    attempts: int
    last_error: str | None
    #: When the submission module may try again (``None``: now).
    next_attempt_at: float | None
    #: When the reconciler may poll again (``None``: once ``grace`` has passed).
    next_poll_at: float | None
    created_at: float
    updated_at: float
    #: When the job last changed state.
    state_changed_at: float
    #: When anything (applied or not) was last recorded for the job; the reconciler's clock.
    last_event_at: float
    #: The downloaded video (set by the download handler): path, SHA-256 hex and bytes.
    media_path: str | None = None
    media_sha256: str | None = None
    media_size: int | None = None

    @property
    def is_terminal(self) -> bool:
        return self.state.is_terminal


@dataclass(frozen=True, slots=True)
class Transition:
    """One row of a job's append-only history: a proposed state and what became of it."""

    id: int
    job_id: str
    #: The job's state when the proposal arrived (``None`` for the row that created the job).
    from_state: JobState | None
    to_state: JobState
    outcome: Outcome
    source: TransitionSource
    reason: str
    #: The raw message that proposed it (JSON text), if any.
    payload: str | None
    delivery_id: int | None
    received_at: float
    recorded_at: float


@dataclass(frozen=True, slots=True)
class Task:
    """One handler run owed for one applied transition."""

    id: int
    job_id: str
    transition_id: int
    handler: str
    #: ``"{job_id}:{to_state}:{handler}"``; unique, and stable enough to pass on downstream.
    idempotency_key: str
    state: TaskState
    attempts: int
    run_after: float
    lease_until: float | None
    last_error: str | None
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class TaskRun:
    """One finished run of a task: when, how it ended, and why if it failed."""

    id: int
    task_id: int
    attempt: int
    outcome: TaskRunOutcome
    error: str | None
    started_at: float
    finished_at: float

    @property
    def duration(self) -> float:
        return self.finished_at - self.started_at


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One webhook request as received, kept for replay and duplicate detection."""

    id: int
    received_at: float
    outcome: DeliveryOutcome
    video_id: int | None
    job_id: str | None
    nonce: str | None
    #: The sender's signed timestamp (seconds), when it could be read.
    timestamp: float | None
    #: A subset of the request headers, lower-cased, never credentials.
    headers: dict[str, str]
    body: bytes
    error: str | None


@dataclass(frozen=True, slots=True)
class TransitionResult:
    """What :meth:`Store.apply_transition` did: the verdict, the job after it, the history row
    and the tasks it queued (none unless applied)."""

    decision: Decision
    job: Job
    transition: Transition
    tasks: Sequence[Task] = field(default_factory=tuple)

    @property
    def outcome(self) -> Outcome:
        return self.decision.outcome

    @property
    def applied(self) -> bool:
        return self.decision.applied


@dataclass(frozen=True, slots=True)
class WebhookIngest:
    """What :meth:`Store.ingest_webhook` did with one verified delivery.

    ``outcome`` is ``ok`` (a known job; ``transition`` says what became of it), ``orphan``
    (no job has the video id; the delivery is kept) or ``duplicate`` (the nonce was used
    before; nothing was written).
    """

    outcome: DeliveryOutcome
    delivery: WebhookDelivery | None
    transition: TransitionResult | None


@dataclass(frozen=True, slots=True)
class SubmissionClaim:
    """A job :meth:`Store.claim_submissions` leased to the caller, and the ``queued ->
    submitting`` transition the claim recorded (``None`` for a retried attempt)."""

    job: Job
    transition: TransitionResult | None


class TaskPlanner(Protocol):
    """Names the handlers an applied transition should run.

    Called inside the store's write transaction with the job as it is *after* the transition,
    so it must be quick and pure: no I/O, no awaiting. Raising aborts the whole transition.
    """

    def __call__(self, job: Job, transition: Transition, /) -> Iterable[str]: ...


class JobUpdate(TypedDict, total=False):
    """The bookkeeping fields :meth:`Store.update_job` may change. ``state`` is not one of them:
    only :meth:`Store.apply_transition` moves a job."""

    video_id: int | None
    attempts: int
    last_error: str | None
    next_attempt_at: float | None
    next_poll_at: float | None
    media_path: str | None
    media_sha256: str | None
    media_size: int | None


class Store(Protocol):
    """Durable storage for jobs, their history, webhook deliveries and handler tasks.

    Every method is one transaction. Open the store before use (``await store.open()`` or
    ``async with store:``); ``open`` runs pending migrations.
    """

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    # -- jobs ------------------------------------------------------------------------------

    async def create_job(
        self,
        *,
        kind: str,
        params: Mapping[str, Any],
        trace_id: str | None = None,
        labels: Mapping[str, str] | None = None,
        callback_url: str | None = None,
        then: Sequence[Mapping[str, Any]] | None = None,
        parent_job_id: str | None = None,
    ) -> Job:
        """Create a job in ``queued`` and record that as its first transition.

        ``trace_id`` defaults to a fresh UUID. Raises ``ConstraintError`` for a trace id already
        in use or an unknown ``parent_job_id``.
        """
        ...

    async def get_job(self, job_id: str) -> Job | None: ...

    async def get_job_by_video_id(self, video_id: int) -> Job | None: ...

    async def get_job_by_trace_id(self, trace_id: str) -> Job | None: ...

    async def list_jobs(
        self,
        *,
        state: JobState | None = None,
        kind: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """Jobs newest first, filtered; returns the page and the cursor for the next one
        (``None`` on the last page)."""
        ...

    async def jobs_updated_since(self, since: float, *, limit: int = 100) -> list[Job]:
        """Jobs whose ``updated_at`` is after ``since``, least recently updated first: what
        changed since a watcher (the dashboard's live list) last looked."""
        ...

    async def update_job(self, job_id: str, **fields: Unpack[JobUpdate]) -> Job:
        """Change submission bookkeeping; raises ``JobNotFoundError`` or, for a video id
        another job holds, ``ConstraintError``."""
        ...

    async def jobs_overdue(self, now: float, grace: float, *, limit: int = 100) -> list[Job]:
        """Jobs in ``submitting`` or ``generating`` with nothing recorded for ``grace`` seconds
        and whose ``next_poll_at`` (if set) has come, longest silent first."""
        ...

    async def claim_overdue(self, now: float, grace: float, *, hold_seconds: float,
                            limit: int = 100) -> list[Job]:
        """Like :meth:`jobs_overdue`, but claims what it returns: each job's ``next_poll_at``
        becomes ``now + hold_seconds`` in the same step, so reconcilers in several processes
        split the overdue jobs instead of polling each one once per replica."""
        ...

    async def jobs_due_for_submit(self, now: float, *, limit: int = 100) -> list[Job]:
        """Jobs to (re)send to PixVerse whose ``next_attempt_at`` (if set) has come, oldest
        first: ``queued`` ones, and ``submitting`` ones without a video id, whose earlier
        attempt failed ambiguously or was cut short by a crash (``next_attempt_at`` acts as
        the attempt's lease)."""
        ...

    async def claim_submissions(
        self, now: float, *, limit: int, lease_seconds: float, max_in_flight: int = 0,
        tasks_for: TaskPlanner | None = None,
    ) -> list[SubmissionClaim]:
        """Take jobs to send to PixVerse, atomically across every process sharing the store:
        ``submitting`` jobs without a video id whose lease ran out (an attempt cut short), then
        due ``queued`` jobs, moved to ``submitting`` (recorded as a transition) while the
        ``submitting`` + ``generating`` count stays within ``max_in_flight`` (0: no limit).
        Every returned job is leased until ``now + lease_seconds`` (``next_attempt_at``)."""
        ...

    async def count_jobs(self, states: Sequence[JobState]) -> int:
        """How many jobs are in any of ``states`` (the in-flight limit counts with it)."""
        ...

    async def count_jobs_by_state(
        self, states: Sequence[JobState] | None = None
    ) -> dict[JobState, int]:
        """How many jobs are in each state (of ``states``, default all); states without jobs
        are left out. An index scan, for metrics and the dashboard."""
        ...

    # -- transitions -----------------------------------------------------------------------

    async def apply_transition(
        self,
        job_id: str,
        proposed: JobState,
        *,
        source: TransitionSource,
        payload: Mapping[str, Any] | str | None = None,
        received_at: float | None = None,
        tasks_for: TaskPlanner | None = None,
        delivery_id: int | None = None,
    ) -> TransitionResult:
        """Record a proposed state for a job and, if :func:`service.lifecycle.decide` applies
        it, move the job and queue the handler tasks ``tasks_for`` names, all in one
        transaction. The history row is written whatever the outcome.

        Raises ``JobNotFoundError``; an exception from ``tasks_for`` propagates and leaves
        nothing behind.
        """
        ...

    async def list_transitions(self, job_id: str) -> list[Transition]:
        """A job's history, oldest first."""
        ...

    async def get_transition(self, transition_id: int) -> Transition | None: ...

    # -- webhook deliveries ----------------------------------------------------------------

    async def record_webhook_delivery(
        self,
        *,
        body: bytes,
        headers: Mapping[str, str],
        outcome: DeliveryOutcome,
        received_at: float,
        video_id: int | None = None,
        job_id: str | None = None,
        nonce: str | None = None,
        timestamp: float | None = None,
        error: str | None = None,
    ) -> WebhookDelivery:
        """Keep one delivery. Credential headers are dropped even if passed."""
        ...

    async def ingest_webhook(
        self,
        *,
        body: bytes,
        headers: Mapping[str, str],
        nonce: str,
        timestamp: float,
        received_at: float,
        video_id: int,
        proposed: JobState,
        tasks_for: TaskPlanner | None = None,
    ) -> WebhookIngest:
        """Take one verified PixVerse webhook in a single transaction: claim its nonce, keep
        the delivery, and apply the proposed state to the job with that video id.

        Doing all three at once matters: had the nonce been claimed in a transaction of its
        own, a crash before the transition committed would make PixVerse's retry look like a
        replay, and the event would be lost.
        """
        ...

    async def get_webhook_delivery(self, delivery_id: int) -> WebhookDelivery | None: ...

    async def list_webhook_deliveries(
        self,
        *,
        video_id: int | None = None,
        outcome: DeliveryOutcome | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> tuple[list[WebhookDelivery], int | None]:
        """Deliveries newest first, with a cursor like :meth:`list_jobs`."""
        ...

    async def claim_nonce(self, nonce: str, timestamp: float | None) -> bool:
        """Claim a webhook nonce atomically: ``True`` the first time, ``False`` ever after."""
        ...

    async def prune_nonces(self, claimed_before: float) -> int:
        """Forget nonces claimed before a time (older than the signature tolerance)."""
        ...

    # -- handler tasks ---------------------------------------------------------------------

    async def claim_tasks(
        self, now: float, *, limit: int = 10, lease_seconds: float = 60.0
    ) -> list[Task]:
        """Lease due pending tasks (and running ones whose lease ran out) to the caller."""
        ...

    async def complete_task(self, task_id: int, *, attempt: int | None = None,
                            started_at: float | None = None) -> Task:
        """Mark a task succeeded. With ``attempt`` (the ``attempts`` value the claim returned)
        it only succeeds while that run holds the lease, else raises ``LeaseLostError``; with
        ``started_at`` the run is kept in the task's history."""
        ...

    async def fail_task(self, task_id: int, *, error: str, retry_at: float | None,
                        attempt: int | None = None, started_at: float | None = None) -> Task:
        """Record a failed run: back to pending until ``retry_at``, or dead if it is ``None``.
        ``attempt`` and ``started_at`` as for :meth:`complete_task`."""
        ...

    async def extend_task_lease(self, task_id: int, *, attempt: int, lease_until: float) -> bool:
        """Renew a running task's lease; ``False`` if this run no longer holds it."""
        ...

    async def release_task(self, task_id: int, *, attempt: int, run_after: float) -> bool:
        """Give a claimed task back unrun (it waits on another handler): pending again from
        ``run_after``, and the claim does not count as an attempt. ``False`` if the lease was
        lost."""
        ...

    async def retry_task(self, task_id: int, *, now: float | None = None) -> Task:
        """Revive a dead task: pending now, with a fresh budget of attempts. Raises
        ``TaskNotFoundError``, or ``TaskStateError`` unless the task is dead."""
        ...

    async def get_task(self, task_id: int) -> Task | None: ...

    async def list_tasks(
        self, *, job_id: str | None = None, state: TaskState | None = None,
        handler: str | None = None, limit: int = 1000,
    ) -> list[Task]:
        """Tasks oldest first, filtered."""
        ...

    async def list_task_runs(self, task_id: int) -> list[TaskRun]:
        """A task's finished runs, oldest first."""
        ...

    async def next_task_due(self) -> float | None:
        """When the next task becomes claimable (a pending task's ``run_after`` or a running
        task's ``lease_until``), or ``None`` if none is waiting."""
        ...

    async def count_tasks_by_state(
        self, states: Sequence[TaskState] | None = None
    ) -> dict[TaskState, int]:
        """How many tasks are in each state (of ``states``, default all); states without
        tasks are left out. The queue depth metric reads pending, running and dead."""
        ...

    async def wait_for_tasks(self, timeout: float) -> None:
        """Return when tasks may have become due (queued or revived by this process, or, for
        a shared database, when another process says so), or after ``timeout`` seconds."""
        ...
