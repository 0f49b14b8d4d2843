"""Retention passes: the worker keeps the database and the media folder bounded.

:class:`Pruner` runs a pass every ``PIXHOOK_RETENTION_INTERVAL`` seconds in each worker
(``pixhook prune`` runs one by hand, ``--dry-run`` only counts). A pass is many small
batches (:mod:`service.store.retention`), with a pause between them so ingest always gets
the write lock next; what it prunes, and with which cutoff:

* history of jobs finished ``PIXHOOK_RETENTION_DAYS`` ago (0 keeps it), and deliveries no
  job claimed, by the same age;
* webhook nonces claimed two signature tolerances ago: a webhook's timestamp may be up to one
  tolerance ahead of the clock that claimed its nonce, and a replay is refused as stale one
  tolerance after that timestamp, so an older nonce can never be needed again;
* Idempotency-Keys past ``PIXHOOK_IDEMPOTENCY_TTL``; heartbeats of workers silent a day;
* downloaded videos of jobs finished ``PIXHOOK_MEDIA_RETENTION_DAYS`` ago (0, the default,
  keeps them): the file is deleted and the job's ``media_path`` cleared.

Several workers may prune at once: each batch is its own transaction (on PostgreSQL the jobs
of a batch are claimed ``SKIP LOCKED``), so they split the work.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from service.settings import Settings
from service.store import Store
from service.store.retention import PruneCounts
from service.store.workers import FORGET_AFTER_SECONDS

logger = logging.getLogger(__name__)

DAY_SECONDS: Final = 86400.0
#: Seconds between two batches: the write lock is free for ingest in between.
BATCH_PAUSE_SECONDS: Final = 0.005


@dataclasses.dataclass(frozen=True)
class Cutoffs:
    """What is older than these times goes (``None``: kept forever)."""

    history: float | None
    nonces: float
    keys: float
    media: float | None


class Pruner:
    """One process's retention passes."""

    def __init__(self, store: Store, settings: Settings, *,
                 clock: Callable[[], float] = time.time,
                 pause: float = BATCH_PAUSE_SECONDS) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._pause = pause

    def cutoffs(self) -> Cutoffs:
        """Each kind's cutoff now."""
        now, s = self._clock(), self._settings
        return Cutoffs(
            history=now - s.retention_days * DAY_SECONDS if s.retention_days else None,
            nonces=now - 2 * s.webhook_tolerance,
            keys=now - s.idempotency_ttl,
            media=now - s.media_retention_days * DAY_SECONDS if s.media_retention_days
            else None)

    async def count(self) -> PruneCounts:
        """What a pass would prune now (``pixhook prune --dry-run``)."""
        cut = self.cutoffs()
        never = float("-inf")
        return await self._store.count_prunable(
            finished_before=never if cut.history is None else cut.history,
            nonces_before=cut.nonces, keys_before=cut.keys,
            media_before=never if cut.media is None else cut.media)

    async def run_once(self) -> PruneCounts:
        """One whole pass, in small batches; returns what went."""
        cut = self.cutoffs()
        done = PruneCounts()
        if cut.history is not None:
            while (batch := await self._store.prune_history_batch(cut.history)).jobs:
                done.add(batch)
                await asyncio.sleep(self._pause)
            done.deliveries += await self._rows("prune_unmatched_deliveries", cut.history)
        done.nonces = await self._rows("prune_nonces_batch", cut.nonces)
        done.idempotency_keys = await self._rows("prune_idempotency_keys_batch", cut.keys)
        await self._store.prune_workers(self._clock() - FORGET_AFTER_SECONDS)
        if cut.media is not None:
            done.media_files = await self._media(cut.media)
        if done.total():
            pages = await self._store.give_back_space()
            logger.info("retention: pruned %s; %d free pages given back", _summary(done),
                        pages, extra={"action": "retention"})
        return done

    async def run(self, stop: asyncio.Event) -> None:
        """A pass every ``PIXHOOK_RETENTION_INTERVAL`` seconds (the first soon after start)
        until ``stop`` is set; 0 turns it off."""
        interval = self._settings.retention_interval
        if not interval:
            return
        delay = min(interval, 60.0)  # not at the very start: let the process settle first
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            if stop.is_set():
                return
            try:
                await self.run_once()
            except Exception:
                logger.exception("retention pass failed", extra={"action": "retention"})
            delay = interval

    async def _rows(self, name: str, before: float) -> int:
        total = 0
        while True:
            deleted = await self._store.prune_rows_batch(name, before)
            total += deleted
            if deleted == 0:
                return total
            await asyncio.sleep(self._pause)

    async def _media(self, before: float) -> int:
        removed = 0
        while jobs := await self._store.media_to_prune(before):
            for job in jobs:
                path = job.media_path or ""  # the query selects jobs with one only
                with contextlib.suppress(FileNotFoundError):
                    Path(path).unlink()
                if await self._store.forget_media(job.id, path):
                    removed += 1
            await asyncio.sleep(self._pause)
        return removed


def _summary(counts: PruneCounts) -> str:
    return ", ".join(f"{value} {name.replace('_', ' ')}"
                     for name, value in vars(counts).items() if value) or "nothing"
