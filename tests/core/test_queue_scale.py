"""The task queue costs the same at any length: its reads walk the partial indexes, and a
runner whose slots are all busy does not read it at all (issue 19, point 1)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import httpx
import pytest

from service.handler_api import BaseHandler, HandlerContext, Job, Transition
from service.lifecycle import JobState, TransitionSource
from service.registry import HandlerSet
from service.settings import Settings
from service.store import Store
from service.store.sql import queries
from service.worker import TaskRunner
from tests.core.conftest import Backend
from tests.support.planner import Planner, plans

PENDING = 20_000
RUNNING = 2_000
COLUMNS = ("job_id, transition_id, handler, idempotency_key, state, attempts, run_after, "
           "lease_until, created_at, updated_at")


async def queued_job(store: Store, planner: Planner, *handlers: str) -> tuple[str, int]:
    job = await store.create_job(kind="text_to_video", params={"prompt": "p"})
    with planner.planning(plans(*handlers)):
        result = await store.apply_transition(job.id, JobState.SUCCEEDED,
                                              source=TransitionSource.WEBHOOK)
    return job.id, result.transition.id if result.transition else 0


def fill(backend: Backend, job_id: str, transition_id: int) -> None:
    """A long queue, written with plain SQL: PENDING due tasks and RUNNING leased ones."""
    now = time.time()
    raw = backend.raw()
    try:
        rows = [(job_id, transition_id, "bulk", f"bulk-{i}", "pending", 0, now - 60 + i * 1e-3,
                 None, now, now) for i in range(PENDING)]
        rows += [(job_id, transition_id, "bulk", f"bulk-r{i}", "running", 1, now,
                  now + 600 + i, now, now) for i in range(RUNNING)]
        marks = ", ".join(["?" if backend.name == "sqlite" else "%s"] * len(rows[0]))
        raw.conn.cursor().executemany(f"INSERT INTO tasks ({COLUMNS}) VALUES ({marks})", rows)
        if backend.name == "postgres":
            raw.conn.execute("ANALYZE tasks")  # as autovacuum would after such a load
        else:
            raw.conn.commit()  # and no ANALYZE: SQLite has no statistics unless asked
    finally:
        raw.close()


def plan(backend: Backend, name: str) -> str:
    sql = queries(backend.name)[name]  # type: ignore[arg-type]
    params = {"now": time.time(), "lease_until": time.time() + 60, "limit": 10,
              "window": 1000, "ids": '["bulk"]'}
    raw = backend.raw()
    try:
        if backend.name == "sqlite":
            return "\n".join(str(row[-1]) for row in raw.conn.execute(
                f"EXPLAIN QUERY PLAN {sql}", params))
        return "\n".join(row[0] for row in raw.conn.execute(f"EXPLAIN {sql}", params))
    finally:
        raw.close()


@pytest.fixture
async def long_queue(backend: Backend) -> AsyncIterator[Store]:
    planner = Planner()
    async with backend.new_store(planner=planner) as store:
        job_id, transition_id = await queued_job(store, planner)
        fill(backend, job_id, transition_id)
        yield store


async def test_next_task_due_reads_the_partial_indexes_not_every_task(
        backend: Backend, long_queue: Store) -> None:
    """Before: SQLite went through tasks_state_id, every pending row (0.4 s at 1M)."""
    found = plan(backend, "next_task_due")
    assert "tasks_state_id" not in found, found
    assert "tasks_pending" in found and "tasks_running" in found, found
    due = await long_queue.next_task_due()
    assert due is not None and due < time.time() - 59


async def test_claim_tasks_reads_each_branch_in_due_order_through_its_index(
        backend: Backend, long_queue: Store) -> None:
    """Before: SQLite read the due tasks through tasks_state_id and sorted them all."""
    found = plan(backend, "claim_tasks")
    assert "tasks_pending" in found, found
    if backend.name == "sqlite":
        assert "tasks_state_id" not in found and "tasks_running" in found, found
    claimed = await long_queue.claim_tasks(time.time(), limit=5)
    assert [task.idempotency_key for task in claimed] == [f"bulk-{i}" for i in range(5)]


async def test_a_claim_passing_over_handlers_reads_a_bounded_window_of_the_index(
        backend: Backend, long_queue: Store) -> None:
    """Per-handler limits (issue 19, point 3): the claim that leaves out the handlers at their
    limit walks tasks_pending in due order, at most CLAIM_WINDOW entries, and locks only what
    it takes."""
    found = plan(backend, "claim_tasks_skipping")
    assert "tasks_pending" in found, found
    if backend.name == "sqlite":
        assert "tasks_state_id" not in found and "tasks_running" in found, found
    assert await long_queue.claim_tasks(time.time(), limit=5, skip_handlers=["bulk"]) == []
    claimed = await long_queue.claim_tasks(time.time(), limit=5, skip_handlers=["other"])
    assert [task.idempotency_key for task in claimed] == [f"bulk-{i}" for i in range(5)]


class BlockingHandler(BaseHandler):
    """Holds its slot until the test lets go."""

    name: ClassVar[str] = "blocking"
    release: ClassVar[asyncio.Event]
    started: ClassVar[int] = 0

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        type(self).started += 1
        await self.release.wait()


def blocking(settings: Settings, options: Mapping[str, Any]) -> BaseHandler:
    return BlockingHandler(settings, options)


class CountingStore:
    """Counts the queue reads a runner makes; everything else goes to the store."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def next_task_due(self) -> float | None:
        self.reads += 1
        return await self._store.next_task_due()

    async def claim_tasks(self, *args: Any, **kwargs: Any) -> Any:
        self.reads += 1
        return await self._store.claim_tasks(*args, **kwargs)


async def test_a_runner_with_every_slot_busy_does_not_poll_the_queue(backend: Backend) -> None:
    """Before: with tasks due and every slot busy, the runner read next_task_due about every
    millisecond (the due time had passed, so the wait was 1 ms)."""
    BlockingHandler.release = asyncio.Event()
    BlockingHandler.started = 0
    planner = Planner()
    settings = Settings(database_url=backend.url, handlers=("blocking",), task_concurrency=2)
    async with backend.new_store(planner=planner) as store, httpx.AsyncClient() as http:
        for _ in range(5):
            await queued_job(store, planner, "blocking")
        counting = CountingStore(store)

        async def submit(*args: Any, **kwargs: Any) -> Job:
            raise AssertionError("not used here")

        handlers = HandlerSet.from_settings(settings, available={"blocking": blocking})
        runner = TaskRunner(counting, handlers, settings,  # type: ignore[arg-type]
                            http=http, submit=submit)
        stop = asyncio.Event()
        loop = asyncio.create_task(runner.run(stop))
        try:
            async with asyncio.timeout(10):
                while BlockingHandler.started < 2:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            before = counting.reads
            await asyncio.sleep(0.5)
            assert counting.reads - before == 0
            assert BlockingHandler.started == 2
            # A slot that frees is filled at once, without waiting for a poll.
            BlockingHandler.release.set()
            async with asyncio.timeout(0.5):
                while BlockingHandler.started < 5:
                    await asyncio.sleep(0.01)
        finally:
            BlockingHandler.release.set()
            stop.set()
            await asyncio.wait_for(loop, 15)
