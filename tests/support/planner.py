"""A task planner a test can change between calls.

The store's planner is bound once, when the store is built (``SQLiteStore(path,
planner=...)``, ``connect(url, planner=...)``) or wired (``store.bind(planner=...)``); no call
takes one of its own. A test that plans differently from one call to the next binds a
:class:`Planner` and sets what it plans before each call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

from service.store import Job, TaskPlanner, Transition


class Planner:
    """A :class:`~service.store.TaskPlanner` that asks ``plan`` (``None``: plans nothing)."""

    def __init__(self, plan: TaskPlanner | None = None) -> None:
        self.plan = plan

    def __call__(self, job: Job, transition: Transition) -> Iterable[str]:
        return () if self.plan is None else self.plan(job, transition)

    @contextlib.contextmanager
    def planning(self, plan: TaskPlanner | None) -> Iterator[None]:
        """Plan with ``plan`` inside the block, then as before."""
        previous, self.plan = self.plan, plan
        try:
            yield
        finally:
            self.plan = previous


def plans(*handlers: str) -> TaskPlanner:
    """A planner that names ``handlers`` for every applied transition."""
    return lambda _job, _transition: list(handlers)
