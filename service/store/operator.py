"""The operator's actions: find jobs, revive dead tasks together, replay a finished task, and
read a job's raw event log.

A replay runs one handler again for one transition. A task is one handler for one transition
(its ``idempotency_key`` is unique), so a replay is not a new task: the task itself goes back
to ``pending`` with a fresh budget of attempts, and its runs stay, so its history shows every
run, the replayed ones after the first. A forwarded event is re-sent by replaying its
``forward`` task (the event keeps its ``webhook-id``: receivers see the same message again).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any, Final

from service.lifecycle import JobState
from service.pixverse import vocab
from service.store import records
from service.store.base import StoreBase, filters, page
from service.store.connector import Transaction
from service.store.errors import TaskNotFoundError, TaskStateError
from service.store.records import Job, Task, TaskState, WebhookDelivery, check_limit

#: Most tasks one bulk retry names by id.
MAX_BULK_IDS: Final = 1000


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _json_text(text: str) -> str:
    """``text`` as a JSON column's text holds it (quotes and non-ASCII escaped)."""
    return json.dumps(text.lower())


def search_params(term: str) -> dict[str, Any]:
    """The parameters of the ``job_matches`` condition for an operator's search term: the
    term anywhere in the params' or labels' JSON text; a ``key=value`` term, one label."""
    term = term.strip()
    video_id = vocab.video_id(term)
    anywhere = "%" + _escape_like(_json_text(term)[1:-1]) + "%"
    key, equals, value = term.partition("=")
    label = (f"%{_escape_like(_json_text(key.strip()) + ':' + _json_text(value.strip()))}%"
             if equals else anywhere)
    return {"term": term, "video_id": video_id, "pattern": anywhere, "label_pattern": label}


class OperatorTools(StoreBase):
    """Search, bulk retry, replay and the raw event log (a part of
    :class:`service.store.Store`)."""

    async def search_jobs(self, term: str, *, state: JobState | None = None,
                          kind: str | None = None, limit: int = 50, cursor: str | None = None,
                          ) -> tuple[list[Job], str | None]:
        """Jobs newest first whose id, trace id or video id is ``term``, or whose prompt
        (any param) or labels contain it (``key=value`` matches one label; ASCII letters
        match in any case), optionally only in ``state`` or of ``kind``; the page and the
        next cursor, as :meth:`Jobs.list_jobs`."""
        check_limit(limit)
        conditions, params = filters(state=None if state is None else JobState(state).value,
                                     kind=kind)
        conditions.append("{job_matches}")
        params.update(search_params(term))
        if cursor is not None:
            conditions.append("id < :cursor")
            params["cursor"] = cursor
        sql = self._sql.render(page("SELECT * FROM jobs", conditions, "id DESC"))
        rows = await self._db.read(lambda tx: tx.fetch_all(sql, {**params, "limit": limit + 1}))
        jobs = [records.job(row) for row in rows]
        return jobs[:limit], jobs[limit - 1].id if len(jobs) > limit else None

    async def retry_dead_tasks(self, *, task_ids: Collection[int] | None = None,
                               handler: str | None = None, job_id: str | None = None,
                               ) -> list[Task]:
        """Revive dead tasks together, in one transaction: those of ``task_ids`` (or every
        dead task), narrowed by ``handler`` and ``job_id``. Tasks that are not dead are left
        alone; the revived ones are returned, by id."""
        conditions = ["state = 'dead'"]
        params: dict[str, Any] = {}
        if task_ids is not None:
            ids = sorted(set(task_ids))
            if len(ids) > MAX_BULK_IDS:
                raise ValueError(f"at most {MAX_BULK_IDS} task ids at once, not {len(ids)}")
            if not ids:
                return []
            names = [f":id{n}" for n in range(len(ids))]
            conditions.append(f"id IN ({', '.join(names)})")
            params.update({name[1:]: value for name, value in zip(names, ids, strict=True)})
        for column, value in (("handler", handler), ("job_id", job_id)):
            if value is not None:
                conditions.append(f"{column} = :{column}")
                params[column] = value
        sql = self._sql.render(
            "UPDATE tasks SET {revive_task} WHERE " + " AND ".join(conditions) + " RETURNING *")

        async def op(tx: Transaction) -> list[Task]:
            rows = await tx.fetch_all(sql, {**params, "now": self._clock()})
            if rows:
                await tx.notify_tasks()
            return sorted(map(records.task, rows), key=lambda task: task.id)

        return await self._db.write(op)

    async def replay_task(self, task_id: int) -> Task:
        """Run a finished task (succeeded or dead) again, now, with a fresh budget of
        attempts; its runs so far stay in its history. Raises ``TaskNotFoundError``, or
        ``TaskStateError`` while it is pending or running (it is about to run anyway)."""
        async def op(tx: Transaction) -> Task:
            row = await tx.fetch_one(self._sql["replay_task"],
                                     {"id": task_id, "now": self._clock()})
            if row is None:
                found = await tx.fetch_one(self._sql["get_task"], {"id": task_id})
                if found is None:
                    raise TaskNotFoundError(task_id)
                raise TaskStateError(f"task {task_id} is {found['state']}; only a finished "
                                     "task (succeeded or dead) can be replayed")
            await tx.notify_tasks()
            return records.task(row)

        return await self._db.write(op)

    async def recent_tasks(self, *, state: TaskState | None = None,
                           limit: int = 200) -> list[Task]:
        """Tasks newest first (the operator's view; the queue lists oldest first)."""
        conditions, params = filters(state=None if state is None else TaskState(state).value)
        sql = self._sql.render(page("SELECT * FROM tasks", conditions, "id DESC"))
        rows = await self._db.read(
            lambda tx: tx.fetch_all(sql, {**params, "limit": check_limit(limit)}))
        return [records.task(row) for row in rows]

    async def list_job_deliveries(self, job_id: str, *,
                                  limit: int = 200) -> list[WebhookDelivery]:
        """Every webhook delivery recorded for a job, oldest first, whatever its outcome:
        with the transitions, the job's raw event log."""
        params = {"job_id": job_id, "limit": check_limit(limit)}
        rows = await self._db.read(
            lambda tx: tx.fetch_all(self._sql["list_job_deliveries"], params))
        return [records.delivery(row) for row in rows]

    async def dead_tasks_by_job(self, job_ids: Collection[str]) -> dict[str, list[str]]:
        """The handlers whose tasks are dead, per job of ``job_ids`` (jobs without any are
        left out): what marks a job whose handlers failed in a list."""
        ids = sorted(set(job_ids))
        if not ids:
            return {}
        names = [f":job{n}" for n in range(len(ids))]
        sql = self._sql.render(
            f"SELECT * FROM tasks WHERE state = 'dead' AND job_id IN ({', '.join(names)}) "
            "ORDER BY id")
        params = {name[1:]: value for name, value in zip(names, ids, strict=True)}
        rows = await self._db.read(lambda tx: tx.fetch_all(sql, params))
        dead: dict[str, list[str]] = {}
        for row in rows:
            dead.setdefault(row["job_id"], []).append(row["handler"])
        return dead
