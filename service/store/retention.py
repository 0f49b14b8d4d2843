"""Retention: forget what a year of running would otherwise pile up, a small batch at a time.

What goes, and when (the times are the caller's; :mod:`service.retention` runs the passes):

* the history of a job finished before a cutoff (``PIXHOOK_RETENTION_DAYS``): its task runs,
  tasks, transitions and webhook deliveries. The job row stays (its final state, video id,
  media) and is marked ``pruned_at``, so later passes skip it. A job with a handler task
  still pending or running waits for it. The database lets only that through: transitions
  are append-only while their job can still change (the ``transitions_no_delete`` trigger
  of migration 0007; updates are refused always);
* deliveries no job claimed (refused, orphans), by age, with the same cutoff;
* webhook nonces older than the signature tolerance (a replay that old is refused as stale
  before its nonce is looked at) and Idempotency-Keys past their TTL.

Every batch is one short write transaction of at most ``limit`` jobs or rows, so on SQLite
ingest waits for one batch at most, never a whole pass; afterwards SQLite hands the freed
pages back (``incremental_vacuum``, on files made with ``auto_vacuum = INCREMENTAL``), and on
PostgreSQL autovacuum reclaims the dead rows (small batches keep each table's dead share low).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Final

from service.store.base import StoreBase, required
from service.store.connector import Transaction
from service.store.records import Job, job

#: Jobs per history batch: a job has a handful of transitions, deliveries and tasks, so a
#: batch writes a few hundred rows.
JOBS_PER_BATCH: Final = 50
#: Rows per batch of the tables pruned row by row (nonces, keys, unmatched deliveries).
ROWS_PER_BATCH: Final = 500
#: Free pages handed back per transaction (8 MiB of 4 KiB pages).
PAGES_PER_BATCH: Final = 2000


@dataclasses.dataclass
class PruneCounts:
    """Rows (and media files) pruned, or that a pass would prune."""

    jobs: int = 0
    transitions: int = 0
    deliveries: int = 0
    tasks: int = 0
    task_runs: int = 0
    events: int = 0
    nonces: int = 0
    idempotency_keys: int = 0
    media_files: int = 0

    def add(self, other: PruneCounts) -> None:
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def total(self) -> int:
        return sum(dataclasses.astuple(self))


class Retention(StoreBase):
    """Batches of old rows, deleted; the counts of what would be."""

    async def prune_history_batch(self, finished_before: float, *,
                                  limit: int = JOBS_PER_BATCH) -> PruneCounts:
        """Prune the history of up to ``limit`` jobs finished before a time, in one
        transaction; ``jobs == 0`` when none is left."""
        async def op(tx: Transaction) -> PruneCounts:
            rows = await tx.fetch_all(self._sql["prunable_jobs"],
                                      {"before": finished_before, "limit": limit})
            if not rows:
                return PruneCounts()
            ids = {"ids": json.dumps([row["id"] for row in rows])}
            counts = PruneCounts(jobs=len(rows))
            counts.task_runs = await tx.execute(self._sql["prune_task_runs"], ids)
            counts.tasks = await tx.execute(self._sql["prune_tasks"], ids)
            counts.transitions = await tx.execute(self._sql["prune_transitions"], ids)
            counts.events = await tx.execute(self._sql["prune_events"], ids)
            counts.deliveries = await tx.execute(self._sql["prune_job_deliveries"], ids)
            await tx.execute(self._sql["mark_pruned"], {**ids, "now": self._clock()})
            return counts

        return await self._db.write(op)

    async def prune_rows_batch(self, name: str, before: float, *,
                               limit: int = ROWS_PER_BATCH) -> int:
        """Delete up to ``limit`` rows older than ``before`` with one of the row-by-row
        statements: ``prune_nonces_batch``, ``prune_idempotency_keys_batch`` or
        ``prune_unmatched_deliveries``. Returns how many went (fewer than ``limit``: done)."""
        if name not in ("prune_nonces_batch", "prune_idempotency_keys_batch",
                        "prune_unmatched_deliveries"):
            raise ValueError(f"not a row-by-row prune: {name}")
        return await self._db.write(lambda tx: tx.execute(
            self._sql[name], {"before": before, "limit": limit}))

    async def media_to_prune(self, finished_before: float, *,
                             limit: int = ROWS_PER_BATCH) -> list[Job]:
        """Finished jobs whose downloaded video is older than a time, oldest first."""
        rows = await self._db.read(lambda tx: tx.fetch_all(
            self._sql["media_to_prune"], {"before": finished_before, "limit": limit}))
        return [job(row) for row in rows]

    async def forget_media(self, job_id: str, media_path: str) -> bool:
        """Clear a job's media path once its file is gone (``False`` if it changed since)."""
        changed = await self._db.write(lambda tx: tx.execute(
            self._sql["forget_media"], {"id": job_id, "media_path": media_path}))
        return changed == 1

    async def count_prunable(self, *, finished_before: float, nonces_before: float,
                             keys_before: float, media_before: float) -> PruneCounts:
        """What a pass with these cutoffs would prune (read only)."""
        params = {"before": finished_before, "nonces_before": nonces_before,
                  "keys_before": keys_before, "media_before": media_before}
        row = required(await self._db.read(
            lambda tx: tx.fetch_one(self._sql["count_prunable"], params)))
        return PruneCounts(**{f.name: int(row[f.name]) for f in dataclasses.fields(PruneCounts)})

    async def give_back_space(self, *, pages_per_batch: int = PAGES_PER_BATCH) -> int:
        """Return free pages to the file system, a batch per transaction, and say how many
        (SQLite; PostgreSQL has none to give: 0)."""
        async def free_pages(tx: Transaction) -> int:
            return int(required(await tx.fetch_one(self._sql["free_pages"]))["freelist_count"])

        async def op(tx: Transaction) -> int:
            before = await free_pages(tx)
            for _ in range(min(before, pages_per_batch)):
                await tx.execute(self._sql["incremental_vacuum"])
            return before - await free_pages(tx)

        freed = 0
        # Stops when a batch frees nothing: done, or a file not made for it (no auto_vacuum).
        while batch := await self._db.write(op):
            freed += batch
        return freed
