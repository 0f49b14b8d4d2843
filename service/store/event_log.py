"""The event log: every transition and every finished task run, numbered for the event stream.

The ``events`` table (migration 0008) gets one row per fact, written in the transaction that
writes the fact: :func:`append_transition_event` from the ledger (and the job's first
transition in :mod:`service.store.jobs`), :func:`append_task_run_event` from the queue, and one
set-based ``INSERT ... SELECT`` per webhook batch (:mod:`service.store.sqlite_webhook_batch`,
:mod:`service.store.postgres_webhook_batch`, which takes the lock just before its one write
statement). Its id is the stream position that ``GET /api/events`` pages by and clients
resume from, so it must never let a reader see id 11 and later find id 10.

Why that holds:

* SQLite has one writer: ids (``INTEGER PRIMARY KEY``, max + 1) are handed out and committed
  in one order, and a rolled-back id is simply reused, never seen.
* PostgreSQL hands out identity values when a row is inserted, not when it commits: two
  transactions can commit 11 before 10, and a reader that saw 11 and resumed after it would
  skip 10 for good. So every writer takes the transaction-scoped ``events`` advisory lock just
  before its insert here, and holds it until it commits: ids are assigned and made visible one
  writer at a time, in commit order. A reader needs no lock and no settle delay, and a gap (a
  rolled-back insert) is only a gap. The price is that the *end* of transactions that record
  events (the insert and the commit) is serialized across replicas; the rest of each
  transaction (locks, decisions, task rows) still runs concurrently. We preferred that to the
  alternatives: tracking in-flight transactions with snapshot ``xmin`` makes the cursor a pair
  and not an id, and a settle delay loses an event whenever a commit stalls longer than it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from service.events import EventType, JobEvent, job_summary, task_run_data, transition_data
from service.lifecycle import JobState
from service.store import records
from service.store.base import StoreBase, page
from service.store.connector import Row, Transaction
from service.store.records import Transition, check_limit

#: The advisory lock that orders event ids by commit on PostgreSQL (a no-op on SQLite).
EVENTS_LOCK: Final = "events"

#: One page of the log, each event with what it is about. Filters are added by
#: :meth:`EventLog.list_events` (columns named here, values always bound).
_SELECT: Final = """
SELECT e.id AS sequence, e.job_id AS job_id, e.state AS job_state, j.kind AS kind,
       j.labels AS labels,
       t.id AS transition_id, t.from_state AS from_state, t.to_state AS to_state,
       t.outcome AS transition_outcome, t.source AS source, t.reason AS reason,
       t.received_at AS received_at, t.recorded_at AS recorded_at,
       r.id AS task_run_id, r.task_id AS task_id, r.attempt AS attempt,
       r.outcome AS run_outcome, r.error AS error, r.started_at AS started_at,
       r.finished_at AS finished_at, k.handler AS handler
FROM events e
JOIN jobs j ON j.id = e.job_id
LEFT JOIN transitions t ON t.id = e.transition_id
LEFT JOIN task_runs r ON r.id = e.task_run_id
LEFT JOIN tasks k ON k.id = r.task_id"""


@dataclass(frozen=True, slots=True)
class EventPage:
    """Events after a position, and where the next page starts."""

    events: list[JobEvent]
    #: The position this page read up to (the last event scanned, matching or not; the
    #: ``after`` given if there was none): pass it back as ``after``.
    last_sequence: int
    #: How many events were read (a full page, ``limit``, says more may follow).
    scanned: int = 0


def state_after(transition: Transition) -> JobState:
    """The job's state once a transition is recorded: its target if applied, else unchanged."""
    if transition.outcome.value == "applied" or transition.from_state is None:
        return transition.to_state
    return transition.from_state


async def append_transition_event(tx: Transaction, sql: Mapping[str, str],
                                  transition: Transition) -> None:
    """Log a transition just written in ``tx`` (last, see the module docstring)."""
    await tx.lock(EVENTS_LOCK)
    await tx.execute(sql["insert_transition_event"], {
        "job_id": transition.job_id, "state": state_after(transition).value,
        "transition_id": transition.id, "recorded_at": transition.recorded_at})


async def append_task_run_event(tx: Transaction, sql: Mapping[str, str], *, task_id: int,
                                task_run_id: int, recorded_at: float) -> None:
    """Log a task run just written in ``tx``, with its job's state now."""
    await tx.lock(EVENTS_LOCK)
    await tx.execute(sql["insert_task_run_event"], {
        "task_id": task_id, "task_run_id": task_run_id, "recorded_at": recorded_at})


def event(row: Row) -> JobEvent | None:
    """A joined row of :data:`_SELECT` as the event it stands for (``None`` once retention
    removed the fact it points at)."""
    if row["transition_id"] is None and row["task_run_id"] is None:
        return None
    job = job_summary(row["job_id"], row["kind"], row["job_state"], json.loads(row["labels"]))
    if row["transition_id"] is not None:
        transition = records.transition({
            **row, "id": row["transition_id"], "outcome": row["transition_outcome"],
            "payload": None, "delivery_id": None})
        return JobEvent(type=EventType.TRANSITION, id=f"transition:{transition.id}",
                        job_id=row["job_id"], time=transition.recorded_at,
                        sequence=row["sequence"],
                        data={"job": job, "transition": transition_data(transition)})
    run = records.task_run({**row, "id": row["task_run_id"], "outcome": row["run_outcome"]})
    return JobEvent(type=EventType.TASK_RUN, id=f"task_run:{run.id}", job_id=row["job_id"],
                    time=run.finished_at, sequence=row["sequence"],
                    data={"job": job, "task_run": task_run_data(run, row["handler"])})


class EventLog(StoreBase):
    """Reading the events table (writers append through the functions above)."""

    async def list_events(self, *, after: int = 0, job_id: str | None = None,
                          kind: str | None = None, state: JobState | None = None,
                          type: EventType | None = None,  # noqa: A002 -- the stream's word
                          labels: Mapping[str, str] | None = None,
                          limit: int = 100) -> EventPage:
        """Events with a position above ``after``, oldest first: at most ``limit`` scanned,
        those matching every filter returned (``labels``: each given label, exactly)."""
        conditions = ["e.id > :after"]
        params: dict[str, Any] = {"after": after, "limit": check_limit(limit)}
        for column, name, value in (("e.job_id", "job_id", job_id), ("j.kind", "kind", kind),
                                    ("e.state", "state", state)):
            if value is not None:
                conditions.append(f"{column} = :{name}")
                params[name] = str(value)
        if type is not None:
            column = "transition_id" if type is EventType.TRANSITION else "task_run_id"
            conditions.append(f"e.{column} IS NOT NULL")
        sql = self._sql.render(page(_SELECT, conditions, "e.id"))
        rows = await self._db.read(lambda tx: tx.fetch_all(sql, params))
        wanted = dict(labels or {})
        events = [item for item in map(event, rows) if item is not None]
        matching = [item for item in events
                    if all(item.data["job"]["labels"].get(key) == value
                           for key, value in wanted.items())]
        return EventPage(matching, rows[-1]["sequence"] if rows else after, len(rows))

    async def last_event_sequence(self) -> int:
        """The newest position in the log (0 when it is empty): where a stream that wants only
        new events starts."""
        row = await self._db.read(lambda tx: tx.fetch_one(self._sql["last_event_sequence"]))
        return int(row["sequence"] or 0) if row is not None else 0
