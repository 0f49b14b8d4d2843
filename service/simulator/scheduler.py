"""One timer for every simulated job: a heap of due times and a single asyncio task.

Thousands of jobs cost one heap entry each, not one sleeping task each. Readers may also
call :meth:`DueHeap.pop_due` themselves (the state does, on every request), so a status read
never lags behind the clock even if the loop is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)


class DueHeap:
    """Keys ordered by due time (monotonic seconds). Stale keys are the caller's to skip."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, int]] = []
        self._seq = itertools.count()
        self._wake: asyncio.Event | None = None

    def push(self, due: float, key: int) -> None:
        earliest = self._heap[0][0] if self._heap else None
        heapq.heappush(self._heap, (due, next(self._seq), key))
        if self._wake is not None and (earliest is None or due < earliest):
            self._wake.set()

    def pop_due(self, now: float) -> list[int]:
        """Remove and return the keys due at ``now`` or earlier, earliest first."""
        keys = []
        while self._heap and self._heap[0][0] <= now:
            keys.append(heapq.heappop(self._heap)[2])
        return keys

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def clear(self) -> None:
        self._heap.clear()

    async def run(self, tick: Callable[[], None], clock: Callable[[], float]) -> None:
        """Call ``tick`` whenever the earliest due time passes; runs until cancelled."""
        self._wake = asyncio.Event()
        try:
            while True:
                try:
                    tick()
                except Exception:  # one bad job must not stop every other job's clock
                    logger.exception("simulator tick failed", extra={"action": "sim_tick"})
                due = self.next_due()
                self._wake.clear()
                timeout = None if due is None else max(0.0, due - clock())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
        finally:
            self._wake = None
