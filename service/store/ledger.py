"""The ledger: the one place a transition is written.

A proposed state (from the submitter, a poll or an adopted orphan) is decided by
:func:`service.lifecycle.decide` and written by :meth:`Ledger._record`, in the transaction of
whoever proposed it: the history row, the job's new clocks and state, and the handler tasks the
planner names, all or nothing. :meth:`Ledger.apply_transition` is its entry point; claiming a
job for submission (:meth:`service.store.jobs.Jobs.claim_submissions`) writes its ``queued ->
submitting`` through it too. Webhooks are written in set-based batches, on both databases
(:meth:`service.store.webhook_batch.Webhooks.ingest_webhook`), by the same rules:
:func:`step_transition` and :func:`plan_tasks`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from service.lifecycle import Decision, JobState, TransitionSource, decide
from service.store import records
from service.store.base import StoreBase, required
from service.store.connector import Operation, Transaction
from service.store.errors import JobNotFoundError
from service.store.event_log import append_transition_event
from service.store.records import Job, TaskPlanner, Transition, TransitionResult


@dataclass(frozen=True, slots=True)
class TransitionStep:
    """What one proposed state does to a job, worked out before any SQL runs."""

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


def plan_tasks(job: Job, transition: Transition, planner: TaskPlanner | None) -> list[str]:
    """The handlers an applied transition triggers, deduplicated in the planner's order."""
    if planner is None:
        return []
    handlers: dict[str, None] = {}
    for handler in planner(job, transition):
        if not isinstance(handler, str) or not handler:
            raise TypeError(f"a task planner returned {handler!r}; handler names are strings")
        handlers.setdefault(handler)
    return list(handlers)


def idempotency_key(job_id: str, to_state: JobState, handler: str) -> str:
    """A task's unique key. A job enters each state at most once (the lifecycle is
    forward-only), so one (job, state, handler) triple names one piece of work for good."""
    return f"{job_id}:{to_state}:{handler}"


def encode_payload(payload: Mapping[str, Any] | str | None) -> str | None:
    """Keep a raw payload as text: a string as given, a mapping as compact JSON."""
    if payload is None or isinstance(payload, str):
        return payload
    return json.dumps(payload, separators=(",", ":"), default=str)


class Ledger(StoreBase):
    """Transitions: the store's one write path for a job's state."""

    async def apply_transition(
        self,
        job_id: str,
        proposed: JobState,
        *,
        source: TransitionSource,
        payload: Mapping[str, Any] | str | None = None,
        received_at: float | None = None,
        delivery_id: int | None = None,
    ) -> TransitionResult:
        """Record a proposed state for a job and, if :func:`service.lifecycle.decide` applies
        it, move the job and queue the tasks the planner names, in one transaction. The
        history row is written whatever the outcome.

        Raises ``JobNotFoundError``; an exception from the planner leaves nothing behind.
        """
        proposed, source = JobState(proposed), TransitionSource(source)
        text = encode_payload(payload)

        async def op(tx: Transaction) -> TransitionResult:
            row = await tx.fetch_one(self._sql["lock_job"], {"id": job_id})
            if row is None:
                raise JobNotFoundError(job_id)
            return await self._record(tx, records.job(row), proposed, source=source,
                                      payload=text, received_at=received_at,
                                      delivery_id=delivery_id)

        result = await self._db.write(op)
        self._observe(result)
        return result

    async def list_transitions(self, job_id: str) -> list[Transition]:
        """A job's history, oldest first."""
        return await self._db.read(self._transitions(job_id))

    def _transitions(self, job_id: str) -> Operation[list[Transition]]:
        async def op(tx: Transaction) -> list[Transition]:
            rows = await tx.fetch_all(self._sql["list_transitions"], {"job_id": job_id})
            return [records.transition(row) for row in rows]

        return op

    async def get_transition(self, transition_id: int) -> Transition | None:
        row = await self._db.read(
            lambda tx: tx.fetch_one(self._sql["get_transition"], {"id": transition_id}))
        return None if row is None else records.transition(row)

    async def _record(self, tx: Transaction, job: Job, proposed: JobState, *,
                      source: TransitionSource, payload: str | None,
                      received_at: float | None, delivery_id: int | None,
                      reason: str | None = None) -> TransitionResult:
        """Write one proposed state for ``job`` (read in this transaction, locked where the
        database needs it): the history row, the job, and, if applied, its tasks. ``reason``
        replaces the lifecycle's wording in the history (``cancelled``)."""
        step = step_transition(job, proposed, now=self._clock(), received_at=received_at)
        after, now = step.job, step.recorded_at
        decision = step.decision if reason is None else replace(step.decision, reason=reason)
        transition = records.transition(required(await tx.fetch_one(
            self._sql["insert_transition"], {
                "job_id": job.id, "from_state": job.state.value, "to_state": proposed.value,
                "outcome": decision.outcome.value, "source": source.value,
                "reason": decision.reason, "payload": payload,
                "delivery_id": delivery_id, "received_at": step.received_at,
                "recorded_at": now})))
        if not step.applied:
            await tx.execute(self._sql["touch_job"],
                             {"last_event_at": after.last_event_at, "id": job.id})
            await append_transition_event(tx, self._sql, transition)
            return TransitionResult(decision, after, transition)
        await tx.execute(self._sql["apply_job_state"], {
            "id": job.id, "state": proposed.value, "state_changed_at": after.state_changed_at,
            "last_event_at": after.last_event_at, "updated_at": now})
        tasks = []
        for handler in plan_tasks(after, transition, self._planner):
            tasks.append(records.task(required(await tx.fetch_one(self._sql["insert_task"], {
                "job_id": job.id, "transition_id": transition.id, "handler": handler,
                "idempotency_key": idempotency_key(job.id, proposed, handler), "now": now}))))
        if tasks:
            await tx.notify_tasks()
        # Last: on PostgreSQL it takes the lock that orders event ids by commit.
        await append_transition_event(tx, self._sql, transition)
        return TransitionResult(decision, after, transition, tuple(tasks))
