"""A worker process for the crash test: ``python -m tests.core.worker_process URL MARKER``.

It runs a task runner whose only handler, ``effect``, touches ``MARKER`` when it starts and then
hangs, so the test can SIGKILL the process mid-task.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import httpx

from service.handler_api import BaseHandler, HandlerContext, Job, Transition
from service.registry import HandlerSet
from service.settings import Settings
from service.store import connect
from service.worker import TaskRunner


class HangingHandler(BaseHandler):
    name: ClassVar[str] = "effect"

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        # Written whole, then renamed: the test kills this process as soon as the marker
        # exists, and must never find it empty.
        marker = Path(self.options["marker"])
        partial = marker.with_suffix(".partial")
        partial.write_text(str(context.task.attempts))
        partial.rename(marker)
        await asyncio.sleep(3600)


async def main(url: str, marker: str) -> None:
    settings = dataclasses.replace(Settings(), handlers=("effect",), task_lease=1.0,
                                   handler_options={"effect": {"marker": marker}})

    def factory(settings: Settings, options: Mapping[str, Any]) -> HangingHandler:
        return HangingHandler(settings, options)

    handlers = HandlerSet.from_settings(settings, available={"effect": factory})
    async with connect(url) as store, httpx.AsyncClient() as http:
        async def submit(*args: Any, **kwargs: Any) -> Job:
            raise NotImplementedError

        runner = TaskRunner(store, handlers, settings, http=http, submit=submit)
        await runner.run(asyncio.Event())


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
