"""Store-agnostic rules a backend applies inside its transactions.

Kept apart from any SQL so a second backend (PostgreSQL) reuses them instead of restating them:
how handler tasks are named and keyed, how a payload is kept, which headers are never stored,
and what a proposed transition does to a job's fields (:func:`step_transition`). The lifecycle
rule itself is :func:`service.lifecycle.decide`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from service.lifecycle import Decision, JobState, decide
from service.store.base import Job, TaskPlanner, Transition

#: Header names never written to the database, whatever the caller passes: a delivery log is
#: read by people debugging, and replay needs only the signature headers.
SECRET_HEADERS: Final = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "api-key", "x-api-key",
})


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A task to insert for an applied transition."""

    handler: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class TransitionStep:
    """What one proposed state does to a job, worked out before any SQL runs.

    The backend records a history row with ``decision``, ``received_at`` and ``recorded_at``,
    then writes ``job``'s clock fields (and, if applied, its state) back to the row.
    """

    decision: Decision
    #: When the message was heard (the caller's ``received_at``, else ``recorded_at``).
    received_at: float
    recorded_at: float
    #: The job as it is after the step.
    job: Job

    @property
    def applied(self) -> bool:
        return self.decision.applied


def step_transition(job: Job, proposed: JobState, *, now: float,
                    received_at: float | None) -> TransitionStep:
    """Apply :func:`~service.lifecycle.decide` to a job read inside the caller's transaction.

    Messages arrive out of order, so the job's clocks only move forward. Anything heard counts
    as news for the reconciler (``last_event_at``); only an applied step changes the state,
    clears the poll backoff and counts as an update (``updated_at``).
    """
    heard_at = now if received_at is None else received_at
    decision = decide(job.state, proposed)
    event_at = max(job.last_event_at, heard_at)
    if not decision.applied:
        after = replace(job, last_event_at=event_at)
    else:
        after = replace(job, state=proposed, state_changed_at=max(job.state_changed_at, heard_at),
                        last_event_at=event_at, next_poll_at=None, updated_at=now)
    return TransitionStep(decision, heard_at, now, after)


def idempotency_key(job_id: str, to_state: JobState, handler: str) -> str:
    """The task's unique key. A job enters each state at most once (the lifecycle is
    forward-only), so one (job, state, handler) triple names one piece of work for good."""
    return f"{job_id}:{to_state}:{handler}"


def plan_tasks(job: Job, transition: Transition, tasks_for: TaskPlanner | None) -> list[TaskSpec]:
    """The tasks an applied transition triggers, deduplicated in the planner's order."""
    if tasks_for is None:
        return []
    specs: dict[str, TaskSpec] = {}
    for handler in tasks_for(job, transition):
        if not isinstance(handler, str) or not handler:
            raise TypeError(f"a task planner returned {handler!r}; handler names are strings")
        specs.setdefault(handler, TaskSpec(handler, idempotency_key(job.id, transition.to_state,
                                                                    handler)))
    return list(specs.values())


def encode_payload(payload: Mapping[str, Any] | str | None) -> str | None:
    """Keep a raw payload as text: a string as given, a mapping as compact JSON."""
    if payload is None or isinstance(payload, str):
        return payload
    return json.dumps(payload, separators=(",", ":"), default=str)


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-case header names and drop credentials."""
    kept: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key not in SECRET_HEADERS:
            kept[key] = value
    return kept
