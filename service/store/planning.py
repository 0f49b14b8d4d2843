"""Store-agnostic rules a backend applies inside its transactions.

Kept apart from any SQL so a second backend (PostgreSQL) reuses them instead of restating them:
how handler tasks are named and keyed, how a payload is kept, which headers are never stored.
The lifecycle rule itself is :func:`service.lifecycle.decide`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from service.lifecycle import JobState
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
