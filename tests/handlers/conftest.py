"""A harness for running one handler against a real store, outside the worker.

``harness.transition(...)`` creates a job, moves it to a state through the store (as a webhook
would) and returns the job, the transition and the task the store queued for the handler;
``harness.context(task)`` builds the :class:`HandlerContext` the worker would pass.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.handler_api import HandlerContext, StoreJobsView
from service.lifecycle import JobState, TransitionSource
from service.pixverse.client import PixVerseClient
from service.settings import Settings
from service.store import Job, SQLiteStore, Task, Transition
from service.submission import Submitter
from tests.handlers.peers import Listener, dual_stack
from tests.support.planner import Planner, plans

T2V = {"prompt": "a lantern over a lake", "model": "v6", "duration": 5, "quality": "540p",
       "aspect_ratio": "16:9"}
_video_ids = itertools.count(300_000_000_000_000_001)


@dataclasses.dataclass
class Harness:
    store: SQLiteStore
    settings: Settings
    http: httpx.AsyncClient
    tmp_path: Path
    #: The real submission module (its loop is not running: nothing reaches PixVerse).
    submitter: Submitter
    #: The store's planner: it plans nothing but inside :meth:`transition`.
    planner: Planner
    #: What ``context.submit`` was called with, in order.
    submitted: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    async def transition(self, handler: str, state: JobState = JobState.SUCCEEDED, *,
                         payload: Mapping[str, Any] | None = None, kind: str = "text_to_video",
                         params: Mapping[str, Any] | None = None,
                         **job_fields: Any) -> tuple[Job, Transition, Task]:
        """A job moved from generating to ``state`` by a webhook with ``payload``, and the
        task queued for ``handler``."""
        job = await self.store.create_job(kind=kind, params=dict(params or T2V), **job_fields)
        video_id = next(_video_ids)
        await self.store.update_job(job.id, video_id=video_id)
        await self.store.apply_transition(job.id, JobState.GENERATING,
                                          source=TransitionSource.SUBMIT)
        body = {"id": str(video_id), "status": 1, "url": "", "size": 0, "has_audio": False,
                "credits": 20, **(payload or {})}
        with self.planner.planning(plans(handler)):
            result = await self.store.apply_transition(
                job.id, state, source=TransitionSource.WEBHOOK, payload=body)
        [task] = await self.store.claim_tasks(result.transition.recorded_at + 1)
        return result.job, result.transition, task

    def context(self, task: Task, options: Mapping[str, Any] | None = None,
                settings: Settings | None = None) -> HandlerContext:
        async def submit(kind: str, params: Mapping[str, Any], **kwargs: Any) -> Job:
            self.submitted.append({"kind": kind, "params": dict(params), **kwargs})
            return await self.submitter.submit(kind, params, **kwargs)

        logger = logging.LoggerAdapter(logging.getLogger(f"tests.handlers.{task.handler}"),
                                       {"job_id": task.job_id, "task_id": task.id})
        return HandlerContext(http=self.http, jobs=StoreJobsView(self.store),
                              settings=settings or self.settings, logger=logger,
                              options=dict(options or {}), task=task, submit=submit)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'pixhook.db'}",
                        media_dir=str(tmp_path / "media"))
    # The client is never used: the submitter's loop does not run in handler tests.
    client = PixVerseClient("unused", base_url="http://127.0.0.1:9/openapi/v2")
    planner = Planner()
    async with SQLiteStore(tmp_path / "pixhook.db", planner=planner) as store, \
            httpx.AsyncClient(timeout=10) as http:
        yield Harness(store=store, settings=settings, http=http, tmp_path=tmp_path,
                      submitter=Submitter(store, client, settings), planner=planner)
    await client.aclose()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    """A receiver on 127.0.0.1 and [::1] (one port) that records every request."""
    recorder = Listener()
    async with dual_stack(recorder.app()) as port:
        recorder.port = port
        yield recorder
