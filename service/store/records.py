"""The records the store returns, and how a row (a mapping of column name to value, from either
database) becomes one.

Both databases keep the same columns under the same names and JSON as text, so one converter
per record makes "the same record from either database" true by construction. Times are
float seconds since the Unix epoch (UTC) everywhere.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypedDict

from service.lifecycle import Decision, JobState, Outcome, TransitionSource

#: A decoded JSON object, as stored in ``params``, ``labels`` and ``then``.
JSONObject = dict[str, Any]
#: The largest page any list method returns.
MAX_PAGE_SIZE: Final = 1000


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
    #: When the job was cancelled (``POST /api/jobs/{id}/cancel``), else ``None``. A job
    #: PixVerse had not accepted is ``rejected`` with it; one it had keeps its state, and no
    #: handler runs for it any more.
    cancelled_at: float | None = None

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
class JobHistory:
    """A job with its transitions, its kept webhooks that changed nothing, and its tasks, all
    read at one moment (:meth:`Store.job_history`)."""

    job: Job
    transitions: Sequence[Transition]
    unapplied_webhooks: Sequence[WebhookDelivery]
    tasks: Sequence[Task]


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
    """Names the handlers an applied transition should run (``HandlerSet.plan``).

    Bound to the store when it is built and called inside the transition's transaction with
    the job as it is *after* the transition, so it must be quick and pure: no I/O, no awaiting.
    Raising aborts the whole transition.
    """

    def __call__(self, job: Job, transition: Transition, /) -> Iterable[str]: ...


class JobUpdate(TypedDict, total=False):
    """The bookkeeping fields :meth:`Store.update_job` may change. ``state`` is not one of them:
    only a transition moves a job."""

    video_id: int | None
    attempts: int
    last_error: str | None
    next_attempt_at: float | None
    next_poll_at: float | None
    media_path: str | None
    media_sha256: str | None
    media_size: int | None


def dumps(value: object) -> str:
    """Compact JSON, as every JSON column is written."""
    return json.dumps(value, separators=(",", ":"))


def check_limit(limit: int) -> int:
    """``limit`` if it is a valid page size; raises ``ValueError`` otherwise."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}, not {limit}")
    return limit


def _json_column(text: str) -> Any:
    # Most jobs have no labels and no follow-up steps: skip the decoder for those.
    if text == "{}":
        return {}
    if text == "[]":
        return []
    return json.loads(text)


def job(row: Mapping[str, Any]) -> Job:
    return Job(
        id=row["id"], kind=row["kind"], state=JobState(row["state"]),
        params=_json_column(row["params"]), trace_id=row["trace_id"],
        video_id=row["video_id"], labels=_json_column(row["labels"]),
        callback_url=row["callback_url"],
        then=_json_column(row["then_steps"]), parent_job_id=row["parent_job_id"],
        attempts=row["attempts"], last_error=row["last_error"],
        next_attempt_at=row["next_attempt_at"], next_poll_at=row["next_poll_at"],
        created_at=row["created_at"], updated_at=row["updated_at"],
        state_changed_at=row["state_changed_at"], last_event_at=row["last_event_at"],
        media_path=row["media_path"], media_sha256=row["media_sha256"],
        media_size=row["media_size"], cancelled_at=row["cancelled_at"],
    )


def transition(row: Mapping[str, Any]) -> Transition:
    from_state = row["from_state"]
    return Transition(
        id=row["id"], job_id=row["job_id"],
        from_state=None if from_state is None else JobState(from_state),
        to_state=JobState(row["to_state"]), outcome=Outcome(row["outcome"]),
        source=TransitionSource(row["source"]), reason=row["reason"], payload=row["payload"],
        delivery_id=row["delivery_id"], received_at=row["received_at"],
        recorded_at=row["recorded_at"],
    )


def task(row: Mapping[str, Any]) -> Task:
    return Task(
        id=row["id"], job_id=row["job_id"], transition_id=row["transition_id"],
        handler=row["handler"], idempotency_key=row["idempotency_key"],
        state=TaskState(row["state"]), attempts=row["attempts"], run_after=row["run_after"],
        lease_until=row["lease_until"], last_error=row["last_error"],
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


def task_run(row: Mapping[str, Any]) -> TaskRun:
    return TaskRun(
        id=row["id"], task_id=row["task_id"], attempt=row["attempt"],
        outcome=TaskRunOutcome(row["outcome"]), error=row["error"],
        started_at=row["started_at"], finished_at=row["finished_at"],
    )


def delivery(row: Mapping[str, Any]) -> WebhookDelivery:
    return WebhookDelivery(
        id=row["id"], received_at=row["received_at"], outcome=DeliveryOutcome(row["outcome"]),
        video_id=row["video_id"], job_id=row["job_id"], nonce=row["nonce"],
        timestamp=row["timestamp"], headers=json.loads(row["headers"]), body=bytes(row["body"]),
        error=row["error"],
    )
