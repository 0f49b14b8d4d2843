"""Worker heartbeats: which worker processes are alive, and what each is doing.

Every worker process upserts one row every few seconds (:mod:`service.heartbeat`): who it is
(host, pid, version, roles), when it started, when it last beat and how many handler tasks it
is running. Readiness fails when no row is fresh (:mod:`service.health`), ``pixhook workers``
lists them, and the dashboard's workers view reads :meth:`Workers.list_workers`. A clean stop
deletes the process's row; a row that stops beating is a worker that froze or died.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final

from service.store.base import StoreBase, required
from service.store.records import check_limit

#: Rows silent this long are forgotten by retention (a worker gone a day is history).
FORGET_AFTER_SECONDS: Final = 86400.0


@dataclass(frozen=True, slots=True)
class WorkerHeartbeat:
    """One worker process, as its last heartbeat described it."""

    id: str
    host: str
    pid: int
    version: str
    #: What the process runs: ``("worker",)``, or ``("web", "worker")`` for ``pixhook serve``.
    roles: tuple[str, ...]
    started_at: float
    beat_at: float
    tasks_running: int

    def age(self, now: float) -> float:
        """Seconds since the last beat."""
        return max(0.0, now - self.beat_at)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready (roles as a list)."""
        return {**asdict(self), "roles": list(self.roles)}


def _heartbeat(row: Mapping[str, Any]) -> WorkerHeartbeat:
    return WorkerHeartbeat(
        id=row["id"], host=row["host"], pid=row["pid"], version=row["version"],
        roles=tuple(role for role in row["roles"].split(",") if role),
        started_at=row["started_at"], beat_at=row["beat_at"],
        tasks_running=row["tasks_running"])


class Workers(StoreBase):
    """The worker_heartbeats table, and the queue's age."""

    async def beat_worker(self, worker: WorkerHeartbeat) -> WorkerHeartbeat:
        """Write a worker's heartbeat (its first one creates the row)."""
        params = {**asdict(worker), "roles": ",".join(worker.roles)}
        row = await self._db.write(lambda tx: tx.fetch_one(self._sql["beat_worker"], params))
        return _heartbeat(required(row))

    async def list_workers(self, *, limit: int = 100) -> list[WorkerHeartbeat]:
        """Every worker that has not said goodbye, the most recently beaten first."""
        check_limit(limit)
        rows = await self._db.read(
            lambda tx: tx.fetch_all(self._sql["list_workers"], {"limit": limit}))
        return [_heartbeat(row) for row in rows]

    async def forget_worker(self, worker_id: str) -> bool:
        """Delete a worker's row (a clean stop); ``False`` if there was none."""
        deleted = await self._db.write(
            lambda tx: tx.execute(self._sql["forget_worker"], {"id": worker_id}))
        return deleted == 1

    async def prune_workers(self, beaten_before: float) -> int:
        """Forget workers silent since before a time; return how many."""
        return await self._db.write(
            lambda tx: tx.execute(self._sql["prune_workers"], {"before": beaten_before}))

    async def newest_worker_beat(self) -> float | None:
        """When any worker last beat, or ``None`` if none ever did (or all stopped)."""
        row = await self._db.read(lambda tx: tx.fetch_one(self._sql["newest_worker_beat"]))
        return None if row is None else row["beat_at"]

    async def oldest_due_task(self) -> float | None:
        """When the pending task that has waited longest became due, or ``None``."""
        now = self._clock()
        row = await self._db.read(
            lambda tx: tx.fetch_one(self._sql["oldest_due_task"], {"now": now}))
        return None if row is None else row["due"]
