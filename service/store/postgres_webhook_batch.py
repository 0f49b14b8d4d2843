"""PostgreSQL's set-based webhook write: a batch (:mod:`service.store.webhook_batch`) in two
round trips.

Several processes write at once, so a batch takes the locks the one-at-a-time path took,
set-based (the statements are the ``webhook_batch_*`` ones in ``sql/postgres.sql``, each sent
as one query with the others of its round trip: :meth:`PostgresTransaction.run_together`):

1. **First round trip:** ``BEGIN``; the nonce claim (``INSERT ... ON CONFLICT DO NOTHING
   RETURNING``, in nonce order); the ``video:<id>`` advisory locks, in key order; and the
   jobs ``FOR UPDATE``, in video id order, read by a statement of their own after the locks
   (READ COMMITTED: a newer snapshot, so a video id the submitter committed before we got
   its lock is seen).
2. :func:`~service.store.webhook_batch.plan` decides each webhook in order, in Python (the
   ledger's rules and the task planner, which is why there are two round trips, not one).
3. **Second round trip:** the ``events`` advisory lock, one statement writing every row
   (deliveries, transitions, jobs, tasks, events) from one JSON document per table (psycopg
   binds a JSON text in microseconds, arrays of text in milliseconds a batch), ``NOTIFY`` if
   tasks were queued, and ``COMMIT``.

The database numbers the rows (identity columns), so the records ``plan`` made carry stand-in
ids until the write statement returns the real ones, each with a natural key: a delivery's
nonce, a transition's delivery, a task's idempotency key. Every guarantee is the same as for
one webhook: a nonce is claimed once (a concurrent claimer waits for our commit), a job's
messages are decided one after another (its row lock), no orphan slips past the submitter (the
video id's lock), event ids are visible in commit order (the events lock, held from just before
the write to the commit), and nothing is answered before the commit.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from service.store import records
from service.store.connector import Params
from service.store.errors import StorageError
from service.store.event_log import EVENTS_LOCK
from service.store.records import (
    Job,
    Task,
    TaskPlanner,
    Transition,
    TransitionResult,
    WebhookDelivery,
    WebhookIngest,
)
from service.store.sql import Queries
from service.store.webhook_batch import JOB_UPDATE_COLUMNS, BatchWrites, Webhook, plan

if TYPE_CHECKING:
    from service.store.postgres import PostgresTransaction


def _json(rows: Sequence[Mapping[str, Any]]) -> str:
    # Floats print as repr(), which PostgreSQL reads back to the same double.
    return json.dumps(rows, separators=(",", ":"), ensure_ascii=False)


def _claims(requests: Sequence[Webhook], now: float) -> Params:
    """Each nonce once, with the timestamp of its first webhook."""
    first: dict[str, float] = {}
    for request in requests:
        first.setdefault(request.nonce, request.timestamp)
    return {"nonces": _json([{"nonce": nonce, "timestamp": timestamp}
                             for nonce, timestamp in first.items()]), "now": now}


def _objects(rows: Sequence[tuple[Any, ...]], names: Sequence[str]) -> list[dict[str, Any]]:
    """Row tuples (webhook_batch's *_COLUMNS orders) as objects, numbered ``n`` in order."""
    return [{"n": n, **dict(zip(names, row, strict=True))} for n, row in enumerate(rows)]


def _write_params(writes: BatchWrites) -> Params:
    """The write statement's rows. Transitions and tasks name their delivery by nonce (its id
    is not known yet); the stand-in ids are left out."""
    nonce_of_delivery = {row[0]: row[5] for row in writes.deliveries}
    nonce_of_transition = {row[0]: nonce_of_delivery[row[8]] for row in writes.transitions}
    deliveries = [(*row[1:8], row[8].hex()) for row in writes.deliveries]
    transitions = [(*row[1:8], nonce_of_delivery[row[8]], *row[9:])
                   for row in writes.transitions]
    tasks = [(row[1], nonce_of_transition[row[2]], *row[3:]) for row in writes.tasks]
    return {
        "deliveries": _json(_objects(deliveries, (
            "received_at", "outcome", "video_id", "job_id", "nonce", "timestamp", "headers",
            "body"))),
        "transitions": _json(_objects(transitions, (
            "job_id", "from_state", "to_state", "outcome", "source", "reason", "payload",
            "nonce", "received_at", "recorded_at"))),
        "jobs": _json([dict(zip(JOB_UPDATE_COLUMNS, row, strict=True))
                       for row in writes.jobs.values()]),
        "tasks": _json(_objects(tasks, (
            "job_id", "nonce", "handler", "idempotency_key", "state", "run_after",
            "created_at", "updated_at"))),
    }


def _renumbered(result: WebhookIngest, ids: dict[tuple[str, str], int]) -> WebhookIngest:
    """``result`` with the ids the database gave its rows (records made afresh: faster than
    ``dataclasses.replace``, on the hot path)."""
    old = result.delivery
    if old is None:
        return result
    delivery_id = ids["delivery", str(old.nonce)]
    delivery = WebhookDelivery(
        id=delivery_id, received_at=old.received_at, outcome=old.outcome,
        video_id=old.video_id, job_id=old.job_id, nonce=old.nonce, timestamp=old.timestamp,
        headers=old.headers, body=old.body, error=old.error)
    step = result.transition
    if step is None:
        return WebhookIngest(result.outcome, delivery, None)
    t = step.transition
    transition = Transition(
        id=ids["transition", str(delivery_id)], job_id=t.job_id, from_state=t.from_state,
        to_state=t.to_state, outcome=t.outcome, source=t.source, reason=t.reason,
        payload=t.payload, delivery_id=delivery_id, received_at=t.received_at,
        recorded_at=t.recorded_at)
    tasks = tuple(Task(
        id=ids["task", task.idempotency_key], job_id=task.job_id, transition_id=transition.id,
        handler=task.handler, idempotency_key=task.idempotency_key, state=task.state,
        attempts=task.attempts, run_after=task.run_after, lease_until=task.lease_until,
        last_error=task.last_error, created_at=task.created_at, updated_at=task.updated_at,
    ) for task in step.tasks)
    return WebhookIngest(result.outcome, delivery,
                         TransitionResult(step.decision, step.job, transition, tasks))


async def write_batch(tx: PostgresTransaction, sql: Queries, requests: Sequence[Webhook],
                      clock: Callable[[], float],
                      planner: TaskPlanner | None) -> list[WebhookIngest]:
    """Record verified webhooks in ``tx`` (begun and committed here), as if one after another.

    Returns one :class:`WebhookIngest` per request, in order. Raises whatever PostgreSQL or a
    task planner raised; the caller rolls back.
    """
    video_ids = sorted({request.video_id for request in requests})
    claimed, _, rows = await tx.run_together([
        (sql["webhook_batch_claim_nonces"], _claims(requests, clock())),
        (sql["webhook_batch_lock_videos"], {"video_ids": video_ids}),
        (sql["webhook_batch_lock_jobs"], {"video_ids": video_ids}),
    ])
    used = {request.nonce for request in requests} - {row["nonce"] for row in claimed}
    jobs: dict[int, Job] = {row["video_id"]: records.job(row) for row in rows}
    writes = BatchWrites()
    # The clock is read with the jobs locked, as Ledger._record reads it.
    results = plan(requests, used=used, jobs=jobs, writes=writes, now=clock(), planner=planner)
    statements: list[tuple[str, Params]] = []
    if writes.transitions:
        statements.append((sql["advisory_lock"], {"name": EVENTS_LOCK}))
    if writes.deliveries:
        statements.append((sql["webhook_batch_write"], _write_params(writes)))
    written = (await tx.run_together(statements, notify=bool(writes.tasks), commit=True))[-1:]
    ids = {(row["kind"], row["key"]): row["id"] for rows in written for row in rows}
    if len(ids) != len(writes.deliveries) + len(writes.transitions) + len(writes.tasks):
        raise StorageError("the webhook batch's write returned other rows than it wrote")
    return [_renumbered(result, ids) for result in results]
