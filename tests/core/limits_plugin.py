"""Two handlers for the concurrency-limit test, run inside a real ``pixhook worker``.

``test_handler_limits.py`` registers them as a plugin would be (a ``.dist-info`` it writes,
whose entry points name this module) and talks to them through files in the directory their
``dir`` option names: each run touches ``NAME-TASK.started``, then waits for ``NAME.release``;
``NAME.peak`` holds the most runs of that handler the process had under way at once.
"""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import ClassVar

from service.handler_api import BaseHandler, HandlerContext, Job, JobState, Transition

#: Runs under way in this process, by handler, and the most seen at once.
_running: collections.Counter[str] = collections.Counter()
_peak: collections.Counter[str] = collections.Counter()


class HeldHandler(BaseHandler):
    """Starts, says so, and holds its slot until the test releases the handler."""

    events: ClassVar[frozenset[JobState]] = frozenset({JobState.SUCCEEDED})

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        directory = Path(self.options["dir"])
        _running[self.name] += 1
        try:
            if _running[self.name] > _peak[self.name]:
                _peak[self.name] = _running[self.name]
                (directory / f"{self.name}.peak").write_text(str(_peak[self.name]))
            (directory / f"{self.name}-{context.task.id}.started").touch()
            while not (directory / f"{self.name}.release").exists():
                await asyncio.sleep(0.02)
        finally:
            _running[self.name] -= 1


class SlowHandler(HeldHandler):
    """Its limit comes from the worker's environment (PIXHOOK_HANDLER_SLOW_CONCURRENCY)."""

    name: ClassVar[str] = "slow"


class QuickHandler(HeldHandler):
    """Declares its own limit, as a handler class may."""

    name: ClassVar[str] = "quick"
    concurrency: ClassVar[int] = 3
