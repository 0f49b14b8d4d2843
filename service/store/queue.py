"""The handler task queue: tasks are queued by the ledger with their transition, then leased to
runners, finished, retried and revived here.

A task's states (:class:`~service.store.records.TaskState`)::

    pending ──claim──► running ──complete──► succeeded
       ▲                  │ ├──fail (retry)──► pending
       └──release─────────┘ └──fail (no retry)──► dead ──retry_task──► pending

A running task whose lease ran out is claimed again (its runner is presumed dead). Finishing a
run with its ``attempt`` succeeds only while that run still holds the lease.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any, Final

from service.store import records
from service.store.base import StoreBase, filters, page, required
from service.store.connector import Operation, Transaction
from service.store.errors import LeaseLostError, TaskNotFoundError, TaskStateError
from service.store.event_log import append_task_run_event
from service.store.records import (
    Job,
    Task,
    TaskRun,
    TaskRunOutcome,
    TaskState,
    Transition,
    check_limit,
)

#: How many of the most overdue pending tasks a claim that passes over some handlers looks
#: through. Handlers at their limit with more due tasks than this ahead of another handler's
#: hold it back until they drain below it (as every task did before per-handler limits); an
#: index on (handler, run_after) of the pending tasks would lift the bound. About 0.6 ms a
#: claim on SQLite when the window is full.
CLAIM_WINDOW: Final = 1000


class TaskQueue(StoreBase):
    """The tasks and task_runs tables."""

    async def claim_tasks(self, now: float, *, limit: int = 10, lease_seconds: float = 60.0,
                          skip_handlers: Collection[str] = ()) -> list[Task]:
        """Lease due pending tasks (and running ones whose lease ran out) to the caller, the
        most overdue first. With ``skip_handlers`` (those at their concurrency limit), the
        tasks of those handlers are passed over, among the :data:`CLAIM_WINDOW` most overdue
        pending tasks."""
        params: dict[str, Any] = {"now": now, "lease_until": now + lease_seconds,
                                  "limit": check_limit(limit)}
        query = "claim_tasks"
        if skip_handlers:
            query = "claim_tasks_skipping"
            params.update(window=CLAIM_WINDOW, ids=json.dumps(sorted(skip_handlers)))
        rows = await self._db.write(lambda tx: tx.fetch_all(self._sql[query], params))
        return sorted(map(records.task, rows), key=lambda task: task.id)

    async def task_subjects(self, tasks: Sequence[Task],
                            ) -> list[tuple[Job | None, Transition | None]]:
        """Each task's job and the transition that queued it (``None`` for one that is gone),
        read in one transaction: one read for a claimed batch, not two for each task."""
        async def op(tx: Transaction) -> list[tuple[Job | None, Transition | None]]:
            found: list[tuple[Job | None, Transition | None]] = []
            for task in tasks:
                job = await tx.fetch_one(self._sql["get_job"], {"id": task.job_id})
                transition = await tx.fetch_one(self._sql["get_transition"],
                                                {"id": task.transition_id})
                found.append((None if job is None else records.job(job),
                              None if transition is None else records.transition(transition)))
            return found

        return await self._db.read(op) if tasks else []

    async def complete_task(self, task_id: int, *, attempt: int | None = None,
                            started_at: float | None = None) -> Task:
        """Mark a task succeeded. With ``attempt`` (the ``attempts`` value the claim returned)
        it only succeeds while that run holds the lease, else raises ``LeaseLostError``; with
        ``started_at`` the run is kept in the task's history."""
        return await self._finish(task_id, "complete_task", {}, attempt=attempt,
                                  started_at=started_at, outcome=TaskRunOutcome.SUCCEEDED)

    async def fail_task(self, task_id: int, *, error: str, retry_at: float | None,
                        attempt: int | None = None, started_at: float | None = None) -> Task:
        """Record a failed run: back to pending until ``retry_at``, or dead if it is ``None``.
        ``attempt`` and ``started_at`` as for :meth:`complete_task`."""
        dead = retry_at is None
        return await self._finish(
            task_id, "fail_task", {
                "state": (TaskState.DEAD if dead else TaskState.PENDING).value,
                "retry_at": retry_at, "error": error},
            attempt=attempt, started_at=started_at, error=error,
            outcome=TaskRunOutcome.DEAD if dead else TaskRunOutcome.RETRY)

    async def _finish(self, task_id: int, query: str, params: dict[str, Any], *,
                      attempt: int | None, started_at: float | None, outcome: TaskRunOutcome,
                      error: str | None = None) -> Task:
        async def op(tx: Transaction) -> Task:
            now = self._clock()
            row = await tx.fetch_one(self._sql[query],
                                     {**params, "id": task_id, "attempt": attempt, "now": now})
            if row is None:
                if await tx.fetch_one(self._sql["get_task"], {"id": task_id}) is not None:
                    raise LeaseLostError(task_id, attempt or 0)
                raise TaskNotFoundError(task_id)
            task = records.task(row)
            if started_at is not None:
                run = required(await tx.fetch_one(self._sql["insert_task_run"], {
                    "task_id": task_id, "attempt": task.attempts, "outcome": outcome.value,
                    "error": error, "started_at": started_at, "finished_at": now}))
                await append_task_run_event(tx, self._sql, task_id=task_id,
                                            task_run_id=run["id"], recorded_at=now)
            if task.state is TaskState.PENDING:
                await tx.notify_tasks()
            return task

        return await self._db.write(op)

    async def extend_task_lease(self, task_id: int, *, attempt: int, lease_until: float) -> bool:
        """Renew a running task's lease; ``False`` if this run no longer holds it."""
        params = {"id": task_id, "attempt": attempt, "lease_until": lease_until}
        changed = await self._db.write(lambda tx: tx.execute(
            self._sql["extend_task_lease"], {**params, "now": self._clock()}))
        return changed == 1

    async def release_task(self, task_id: int, *, attempt: int, run_after: float) -> bool:
        """Give a claimed task back unrun (it waits on another handler): pending again from
        ``run_after``, and the claim does not count as an attempt. ``False`` if the lease was
        lost."""
        params = {"id": task_id, "attempt": attempt, "run_after": run_after}
        changed = await self._db.write(lambda tx: tx.execute(
            self._sql["release_task"], {**params, "now": self._clock()}))
        return changed == 1

    async def retry_task(self, task_id: int, *, now: float | None = None) -> Task:
        """Revive a dead task: pending now, with a fresh budget of attempts. Raises
        ``TaskNotFoundError``, or ``TaskStateError`` unless the task is dead."""
        async def op(tx: Transaction) -> Task:
            clock = self._clock()
            row = await tx.fetch_one(self._sql["retry_task"], {
                "id": task_id, "now": clock, "run_after": clock if now is None else now})
            if row is None:
                found = await tx.fetch_one(self._sql["get_task"], {"id": task_id})
                if found is None:
                    raise TaskNotFoundError(task_id)
                raise TaskStateError(
                    f"task {task_id} is {found['state']}; only dead tasks can be retried")
            await tx.notify_tasks()
            return records.task(row)

        return await self._db.write(op)

    async def get_task(self, task_id: int) -> Task | None:
        row = await self._db.read(lambda tx: tx.fetch_one(self._sql["get_task"], {"id": task_id}))
        return None if row is None else records.task(row)

    async def list_tasks(self, *, job_id: str | None = None, state: TaskState | None = None,
                         handler: str | None = None, limit: int = 1000,
                         newest_first: bool = False) -> list[Task]:
        """Tasks oldest first (or newest first), filtered."""
        return await self._db.read(self._tasks(job_id=job_id, state=state, handler=handler,
                                               limit=limit, newest_first=newest_first))

    def _tasks(self, *, job_id: str | None = None, state: TaskState | None = None,
               handler: str | None = None, limit: int = 1000,
               newest_first: bool = False) -> Operation[list[Task]]:
        conditions, params = filters(
            job_id=job_id, state=None if state is None else TaskState(state).value,
            handler=handler)
        sql = self._sql.render(page("SELECT * FROM tasks", conditions,
                                    "id DESC" if newest_first else "id"))
        params["limit"] = check_limit(limit)

        async def op(tx: Transaction) -> list[Task]:
            return [records.task(row) for row in await tx.fetch_all(sql, params)]

        return op

    async def list_task_runs(self, task_id: int) -> list[TaskRun]:
        """A task's finished runs, oldest first."""
        rows = await self._db.read(
            lambda tx: tx.fetch_all(self._sql["list_task_runs"], {"task_id": task_id}))
        return [records.task_run(row) for row in rows]

    async def count_tasks_by_state(self, states: Sequence[TaskState] | None = None,
                                   ) -> dict[TaskState, int]:
        """How many tasks are in each state (of ``states``, default all); states without
        tasks are left out."""
        rows = await self._db.read(lambda tx: tx.fetch_all(self._sql["count_tasks_by_state"]))
        wanted = set(TaskState if states is None else map(TaskState, states))
        counts = {TaskState(row["state"]): int(row["n"]) for row in rows}
        return {state: n for state, n in counts.items() if state in wanted}

    async def next_task_due(self) -> float | None:
        """When the next task becomes claimable, or ``None`` if none is waiting."""
        row = await self._db.read(lambda tx: tx.fetch_one(self._sql["next_task_due"]))
        return None if row is None else row["due"]

    async def wait_for_tasks(self, timeout: float) -> None:
        """Return when tasks may have become due (queued or revived by any process sharing
        the database, as far as its connector can tell), or after ``timeout`` seconds."""
        await self._db.wait_for_tasks(timeout)
