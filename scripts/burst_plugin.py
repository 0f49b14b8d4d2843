"""The cheap handler ``scripts/bench_burst`` installs as a plugin; not a script itself.

The benchmark copies this file into a temporary directory beside a ``.dist-info`` whose
``entry_points.txt`` registers it under ``pixhook.handlers``, and puts that directory on the
``pixhook serve`` process's ``PYTHONPATH``: pixhook finds it exactly as it finds a third-party
handler, without anything installed in the venv.
"""

from __future__ import annotations

from typing import ClassVar

from service.handler_api import BaseHandler, HandlerContext, Job, JobState, Transition

#: The entry-point (and handler) name.
NAME = "cheap"


class CheapHandler(BaseHandler):
    """Does nothing: what is measured is everything up to its start."""

    name: ClassVar[str] = NAME
    events: ClassVar[frozenset[JobState]] = frozenset({JobState.SUCCEEDED})

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        return None
