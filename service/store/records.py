"""Rows to records and back, shared by every backend.

Both stores select the same columns under the same names and keep JSON as text, so one set of
converters turns a row (any mapping of column name to value) into the frozen records of
:mod:`service.store.base`, and one set of builders makes the values of the rows they insert
(named parameters both drivers take). Keeping them here, not in a backend, is what makes "the
same record from either database" true by construction rather than by care.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Final

from service.lifecycle import JobState, Outcome, TransitionSource
from service.store import planning
from service.store.base import (
    DeliveryOutcome,
    Job,
    Task,
    TaskRun,
    TaskRunOutcome,
    TaskState,
    Transition,
    WebhookDelivery,
)
from service.store.ids import new_job_id

#: The largest page any list method returns.
MAX_PAGE_SIZE: Final = 1000

JOB_COLUMNS: Final = (
    "id, kind, state, params, trace_id, video_id, labels, callback_url, then_steps, "
    "parent_job_id, attempts, last_error, next_attempt_at, next_poll_at, created_at, "
    "updated_at, state_changed_at, last_event_at, media_path, media_sha256, media_size"
)
TRANSITION_COLUMNS: Final = (
    "id, job_id, from_state, to_state, outcome, source, reason, payload, delivery_id, "
    "received_at, recorded_at"
)
TASK_COLUMNS: Final = (
    "id, job_id, transition_id, handler, idempotency_key, state, attempts, run_after, "
    "lease_until, last_error, created_at, updated_at"
)
TASK_RUN_COLUMNS: Final = "id, task_id, attempt, outcome, error, started_at, finished_at"
DELIVERY_COLUMNS: Final = (
    "id, received_at, outcome, video_id, job_id, nonce, timestamp, headers, body, error"
)

#: Fields :meth:`~service.store.base.Store.update_job` may set, mapped to their columns (no
#: user text ever reaches the SQL).
UPDATABLE_JOB_FIELDS: Final = {
    "video_id": "video_id",
    "attempts": "attempts",
    "last_error": "last_error",
    "next_attempt_at": "next_attempt_at",
    "next_poll_at": "next_poll_at",
    "media_path": "media_path",
    "media_sha256": "media_sha256",
    "media_size": "media_size",
}


def dumps(value: object) -> str:
    """Compact JSON, as every JSON column is written."""
    return json.dumps(value, separators=(",", ":"))


def check_limit(limit: int) -> int:
    """``limit`` if it is a valid page size; raises ``ValueError`` otherwise."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE_SIZE}, not {limit}")
    return limit


def check_job_update(fields: Mapping[str, Any]) -> None:
    """Refuse fields ``update_job`` may not set (``state`` above all)."""
    unknown = set(fields) - set(UPDATABLE_JOB_FIELDS)
    if unknown:
        raise TypeError(f"update_job() cannot set {', '.join(sorted(unknown))}")


def job(row: Mapping[str, Any]) -> Job:
    return Job(
        id=row["id"],
        kind=row["kind"],
        state=JobState(row["state"]),
        params=json.loads(row["params"]),
        trace_id=row["trace_id"],
        video_id=row["video_id"],
        labels=json.loads(row["labels"]),
        callback_url=row["callback_url"],
        then=json.loads(row["then_steps"]),
        parent_job_id=row["parent_job_id"],
        attempts=row["attempts"],
        last_error=row["last_error"],
        next_attempt_at=row["next_attempt_at"],
        next_poll_at=row["next_poll_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        state_changed_at=row["state_changed_at"],
        last_event_at=row["last_event_at"],
        media_path=row["media_path"],
        media_sha256=row["media_sha256"],
        media_size=row["media_size"],
    )


def transition(row: Mapping[str, Any]) -> Transition:
    return Transition(
        id=row["id"],
        job_id=row["job_id"],
        from_state=None if row["from_state"] is None else JobState(row["from_state"]),
        to_state=JobState(row["to_state"]),
        outcome=Outcome(row["outcome"]),
        source=TransitionSource(row["source"]),
        reason=row["reason"],
        payload=row["payload"],
        delivery_id=row["delivery_id"],
        received_at=row["received_at"],
        recorded_at=row["recorded_at"],
    )


def task(row: Mapping[str, Any]) -> Task:
    return Task(
        id=row["id"],
        job_id=row["job_id"],
        transition_id=row["transition_id"],
        handler=row["handler"],
        idempotency_key=row["idempotency_key"],
        state=TaskState(row["state"]),
        attempts=row["attempts"],
        run_after=row["run_after"],
        lease_until=row["lease_until"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def task_run(row: Mapping[str, Any]) -> TaskRun:
    return TaskRun(
        id=row["id"],
        task_id=row["task_id"],
        attempt=row["attempt"],
        outcome=TaskRunOutcome(row["outcome"]),
        error=row["error"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )


def delivery(row: Mapping[str, Any]) -> WebhookDelivery:
    return WebhookDelivery(
        id=row["id"],
        received_at=row["received_at"],
        outcome=DeliveryOutcome(row["outcome"]),
        video_id=row["video_id"],
        job_id=row["job_id"],
        nonce=row["nonce"],
        timestamp=row["timestamp"],
        headers=json.loads(row["headers"]),
        body=bytes(row["body"]),
        error=row["error"],
    )


# -- records to rows ---------------------------------------------------------------------------


def new_job_row(*, kind: str, params: Mapping[str, Any], trace_id: str | None,
                labels: Mapping[str, str] | None, callback_url: str | None,
                then: Sequence[Mapping[str, Any]] | None,
                parent_job_id: str | None) -> dict[str, Any]:
    """The values of a new job's row (``INSERT_JOB_SQL``; the caller adds ``now``)."""
    return {
        "id": new_job_id(),
        "kind": kind,
        "state": JobState.QUEUED.value,
        "params": dumps(dict(params)),
        "trace_id": trace_id or str(uuid.uuid4()),
        "labels": dumps(dict(labels or {})),
        "callback_url": callback_url,
        "then_steps": dumps([dict(step) for step in then or ()]),
        "parent_job_id": parent_job_id,
    }


def created_transition_row(job_id: str, now: float) -> dict[str, Any]:
    """The first history row of a job: created in ``queued`` (``INSERT_TRANSITION_SQL``)."""
    return {
        "job_id": job_id, "from_state": None, "to_state": JobState.QUEUED.value,
        "outcome": Outcome.APPLIED.value, "source": TransitionSource.SUBMIT.value,
        "reason": "created", "payload": None, "delivery_id": None,
        "received_at": now, "recorded_at": now,
    }


def delivery_row(*, body: bytes, headers: Mapping[str, str], outcome: DeliveryOutcome,
                 received_at: float, video_id: int | None, job_id: str | None,
                 nonce: str | None, timestamp: float | None,
                 error: str | None) -> dict[str, Any]:
    """The values of a webhook delivery's row (``INSERT_DELIVERY_SQL``); credential headers
    are dropped."""
    return {
        "received_at": received_at, "outcome": DeliveryOutcome(outcome).value,
        "video_id": video_id, "job_id": job_id, "nonce": nonce, "timestamp": timestamp,
        "headers": dumps(planning.safe_headers(headers)), "body": bytes(body), "error": error,
    }
