"""A worker's heartbeat: the row that says, to every process, that this worker is alive.

:class:`HeartbeatLoop` upserts the process's :class:`~service.store.workers.WorkerHeartbeat`
every third of ``PIXHOOK_WORKER_STALE_AFTER`` (so two missed beats still leave it fresh), and
deletes it on a clean stop. It beats only while the task runner's own loop is beating: a
process whose runner is wedged stops looking alive, even though this loop still runs. A
frozen process (its event loop blocked, or SIGSTOPped) stops beating by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from typing import Final, Protocol

from service import __version__
from service.store import Store, WorkerHeartbeat

logger = logging.getLogger(__name__)

#: Beats per stale window: a worker is stale only after missing this many in a row, minus one.
BEATS_PER_WINDOW: Final = 3


class Runner(Protocol):
    """What the heartbeat reads of the task runner (:class:`service.worker.TaskRunner`)."""

    @property
    def heartbeat_at(self) -> float | None: ...

    @property
    def busy(self) -> int: ...


def worker_id() -> str:
    """A name unique to this process: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class HeartbeatLoop:
    """Writes this process's heartbeat until stopped.

    :param roles: what the process runs (``("worker",)``, ``("web", "worker")``).
    :param stale_after: ``PIXHOOK_WORKER_STALE_AFTER``; beats come every third of it.
    """

    def __init__(self, store: Store, runner: Runner, *, roles: tuple[str, ...],
                 stale_after: float, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._runner = runner
        self._clock = clock
        self.stale_after = stale_after
        self.interval = max(0.05, stale_after / BEATS_PER_WINDOW)
        now = clock()
        self.identity = WorkerHeartbeat(
            id=worker_id(), host=socket.gethostname(), pid=os.getpid(), version=__version__,
            roles=roles, started_at=now, beat_at=now, tasks_running=0)

    def runner_alive(self) -> bool:
        """Whether the task runner's loop beat within the stale window (or is just
        starting: the first beat must not wait for it)."""
        beat = self._runner.heartbeat_at
        return beat is None or self._clock() - beat <= self.stale_after

    async def beat(self) -> WorkerHeartbeat | None:
        """Write one heartbeat, unless the runner is wedged; return what was written."""
        if not self.runner_alive():
            logger.warning("the task runner has not looped for %.0f s; not beating",
                           self._clock() - (self._runner.heartbeat_at or 0.0),
                           extra={"action": "heartbeat"})
            return None
        return await self._store.beat_worker(dataclasses.replace(
            self.identity, beat_at=self._clock(), tasks_running=self._runner.busy))

    async def run(self, stop: asyncio.Event) -> None:
        """Beat every interval until ``stop`` is set; then forget this worker."""
        try:
            while not stop.is_set():
                try:
                    await self.beat()
                except Exception:
                    logger.exception("writing the worker heartbeat failed",
                                     extra={"action": "heartbeat"})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
        finally:
            try:
                await self._store.forget_worker(self.identity.id)
            except Exception:
                logger.warning("could not delete this worker's heartbeat on stop",
                               exc_info=True, extra={"action": "heartbeat"})
