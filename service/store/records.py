"""Rows to records, shared by every backend.

Both stores select the same columns under the same names and keep JSON as text, so one set of
converters turns a row (any mapping of column name to value) into the frozen records of
:mod:`service.store.base`. Keeping them here, not in a backend, is what makes "the same
record from either database" true by construction rather than by care.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from service.lifecycle import JobState, Outcome, TransitionSource
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
