"""The task runner: retries with backoff, dead tasks, leases, crashes and ordering."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from service.handler_api import (
    BaseHandler,
    HandlerContext,
    Job,
    PermanentError,
    Retry,
    Transition,
)
from service.lifecycle import JobState, TransitionSource
from service.registry import HandlerSet
from service.settings import Settings
from service.store import LeaseLostError, Store, Task, TaskRunOutcome, TaskState
from service.worker import RetryPolicy, TaskRunner
from tests.core.conftest import Backend
from tests.support.planner import Planner, plans

REPO = Path(__file__).resolve().parents[2]
Behaviour = Callable[[Job, Transition, HandlerContext], Awaitable[None]]


class ScriptedHandler(BaseHandler):
    """Runs whatever the test scripted for its name, and logs every call."""

    name: ClassVar[str] = ""
    calls: ClassVar[list[tuple[str, str, int, float]]] = []

    def __init__(self, settings: Settings, options: Mapping[str, Any], name: str,
                 behaviour: Behaviour, after: tuple[str, ...] = ()) -> None:
        super().__init__(settings, options)
        self.name = name  # type: ignore[misc]
        self.after = after  # type: ignore[misc]
        self._behaviour = behaviour

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        self.calls.append((self.name, job.id, context.attempt, time.time()))
        await self._behaviour(job, transition, context)


async def _ok(job: Job, transition: Transition, context: HandlerContext) -> None:
    return None


@dataclasses.dataclass
class Rig:
    store: Store
    backend: Backend
    settings: Settings
    http: httpx.AsyncClient
    #: The store's planner: plans nothing but inside succeeded_job.
    planner: Planner

    def runner(self, **behaviours: Behaviour | tuple[Behaviour, tuple[str, ...]]) -> TaskRunner:
        factories = {}
        for name, spec in behaviours.items():
            behaviour, after = spec if isinstance(spec, tuple) else (spec, ())
            factories[name] = (lambda n, b, a: lambda s, o: ScriptedHandler(s, o, n, b, a))(
                name, behaviour, after)
        settings = dataclasses.replace(self.settings, handlers=tuple(behaviours))
        handlers = HandlerSet.from_settings(settings, available=factories)

        async def submit(*args: Any, **kwargs: Any) -> Job:
            raise AssertionError("not used here")

        return TaskRunner(self.store, handlers, settings, http=self.http, submit=submit)

    async def succeeded_job(self, *handlers: str) -> tuple[Job, list[Task]]:
        job = await self.store.create_job(kind="text_to_video", params={"prompt": "p"})
        with self.planner.planning(plans(*handlers)):
            result = await self.store.apply_transition(
                job.id, JobState.SUCCEEDED, source=TransitionSource.WEBHOOK)
        return result.job, list(result.tasks)

    async def wait_for_state(self, task_id: int, state: TaskState,
                             timeout: float = 10.0) -> Task:
        deadline = time.monotonic() + timeout
        while True:
            task = await self.store.get_task(task_id)
            assert task is not None
            if task.state is state:
                return task
            assert time.monotonic() < deadline, f"task {task_id} is {task.state}, not {state}"
            await asyncio.sleep(0.02)


@pytest.fixture
async def rig(backend: Backend) -> AsyncIterator[Rig]:
    ScriptedHandler.calls = []
    settings = Settings(database_url=backend.url,
                        task_max_attempts=4, task_backoff=0.05, task_backoff_max=1.0,
                        task_lease=5.0, task_timeout=5.0)
    planner = Planner()
    async with backend.new_store(planner=planner) as store, httpx.AsyncClient() as http:
        yield Rig(store=store, backend=backend, settings=settings, http=http, planner=planner)


@contextlib.asynccontextmanager
async def running(runner: TaskRunner) -> AsyncIterator[None]:
    stop = asyncio.Event()
    loop = asyncio.create_task(runner.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(loop, 15)


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=10, base_seconds=2.0, cap_seconds=30.0)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (4, 16.0), (5, 30.0), (9, 30.0)]:
        delays = {policy.delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered
    assert not policy.exhausted(9) and policy.exhausted(10)


async def test_a_handler_that_raises_is_retried_with_backoff_then_dead(rig: Rig) -> None:
    async def broken(job: Job, transition: Transition, context: HandlerContext) -> None:
        raise RuntimeError(f"boom on attempt {context.attempt}")

    runner = rig.runner(broken=broken)
    _, [task] = await rig.succeeded_job("broken")
    async with running(runner):
        dead = await rig.wait_for_state(task.id, TaskState.DEAD)
    assert dead.attempts == 4
    assert dead.last_error == "RuntimeError: boom on attempt 4"
    runs = await rig.store.list_task_runs(task.id)
    assert [r.outcome for r in runs] == [TaskRunOutcome.RETRY] * 3 + [TaskRunOutcome.DEAD]
    assert [r.attempt for r in runs] == [1, 2, 3, 4]
    # The n-th retry waits at least half of base * 2**(n-1) (0.025, 0.05, 0.1 s) after the
    # failed run; measured between starts, since the wait is counted from inside that run.
    gaps = [later.started_at - earlier.started_at for earlier, later in zip(runs, runs[1:])]
    assert [gap >= 0.05 * 2 ** i / 2 for i, gap in enumerate(gaps)] == [True] * 3
    assert runner.runs[("broken", "retry")] == 3 and runner.runs[("broken", "dead")] == 1


async def test_retry_after_and_permanent_error(rig: Rig) -> None:
    async def later(job: Job, transition: Transition, context: HandlerContext) -> None:
        if context.attempt == 1:
            raise Retry(after=0.3, reason="rate limited")

    async def hopeless(job: Job, transition: Transition, context: HandlerContext) -> None:
        raise PermanentError("never works")

    runner = rig.runner(later=later, hopeless=hopeless)
    _, [later_task, hopeless_task] = await rig.succeeded_job("later", "hopeless")
    async with running(runner):
        done = await rig.wait_for_state(later_task.id, TaskState.SUCCEEDED)
        dead = await rig.wait_for_state(hopeless_task.id, TaskState.DEAD)
    first, second = await rig.store.list_task_runs(later_task.id)
    assert first.outcome is TaskRunOutcome.RETRY and first.error == "Retry: rate limited"
    assert second.started_at - first.started_at >= 0.3
    assert done.attempts == 2
    assert dead.attempts == 1 and dead.last_error == "PermanentError: never works"


async def test_a_timed_out_run_counts_as_a_failure(rig: Rig) -> None:
    async def slow(job: Job, transition: Transition, context: HandlerContext) -> None:
        if context.attempt == 1:
            await asyncio.sleep(10)

    rig.settings = dataclasses.replace(rig.settings, task_timeout=0.2)
    _, [task] = await rig.succeeded_job("slow")
    async with running(rig.runner(slow=slow)):
        await rig.wait_for_state(task.id, TaskState.SUCCEEDED)
    first, _ = await rig.store.list_task_runs(task.id)
    assert first.error == "TimeoutError: timed out after 0.2 s"


async def test_no_task_runs_again_after_it_succeeded(rig: Rig) -> None:
    _, [task] = await rig.succeeded_job("once")
    async with running(rig.runner(once=_ok)):
        await rig.wait_for_state(task.id, TaskState.SUCCEEDED)
        await asyncio.sleep(0.3)  # several idle passes
    assert [call[0] for call in ScriptedHandler.calls] == ["once"]
    assert await rig.store.claim_tasks(time.time() + 10 * 86400) == []


async def test_a_run_that_lost_its_lease_cannot_overwrite_the_new_owner(rig: Rig) -> None:
    _, [task] = await rig.succeeded_job("effect")
    [stale] = await rig.store.claim_tasks(time.time(), lease_seconds=0.0)
    [fresh] = await rig.store.claim_tasks(time.time() + 0.01)  # the lease ran out: reclaimed
    assert (stale.attempts, fresh.attempts) == (1, 2)
    await rig.store.complete_task(task.id, attempt=fresh.attempts, started_at=time.time())
    with pytest.raises(LeaseLostError):
        await rig.store.fail_task(task.id, attempt=stale.attempts, error="late", retry_at=0.0)
    with pytest.raises(LeaseLostError):
        await rig.store.complete_task(task.id, attempt=stale.attempts)
    after = await rig.store.get_task(task.id)
    assert after is not None and after.state is TaskState.SUCCEEDED and after.last_error is None
    assert await rig.store.claim_tasks(time.time() + 86400) == []


async def test_a_worker_killed_mid_task_leaves_it_for_another_run(rig: Rig,
                                                                  tmp_path: Path) -> None:
    _, [task] = await rig.succeeded_job("effect")
    marker = tmp_path / "started"
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.core.worker_process", rig.backend.url, str(marker)],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 20
        while not marker.exists():
            assert child.poll() is None, "the worker process died on its own"
            assert time.monotonic() < deadline, "the worker never started the task"
            await asyncio.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    claimed = await rig.store.get_task(task.id)
    assert claimed is not None and claimed.state is TaskState.RUNNING
    assert claimed.attempts == 1 and marker.read_text() == "1"

    effects: list[int] = []

    async def effect(job: Job, transition: Transition, context: HandlerContext) -> None:
        effects.append(context.attempt)

    async with running(rig.runner(effect=effect)):  # its lease (1 s) runs out, then it runs
        done = await rig.wait_for_state(task.id, TaskState.SUCCEEDED)
    assert effects == [2] and done.attempts == 2
    [run] = await rig.store.list_task_runs(task.id)  # the killed run left no result
    assert run.outcome is TaskRunOutcome.SUCCEEDED and run.attempt == 2


async def test_a_task_waits_for_the_handlers_it_runs_after(rig: Rig) -> None:
    async def slow_download(job: Job, transition: Transition, context: HandlerContext) -> None:
        await asyncio.sleep(0.3)

    runner = rig.runner(download=slow_download, notify=(_ok, ("download",)))
    _, [download, notify] = await rig.succeeded_job("download", "notify")
    async with running(runner):
        await rig.wait_for_state(notify.id, TaskState.SUCCEEDED)
    download_done = (await rig.store.list_task_runs(download.id))[0].finished_at
    notify_run = (await rig.store.list_task_runs(notify.id))[0]
    assert notify_run.started_at >= download_done
    assert notify_run.attempt == 1  # waiting did not use up attempts
    assert runner.runs[("notify", "deferred")] >= 1


async def test_a_dead_task_can_be_revived(rig: Rig) -> None:
    healthy = False

    async def flaky(job: Job, transition: Transition, context: HandlerContext) -> None:
        if not healthy:
            raise PermanentError("downstream is down")

    _, [task] = await rig.succeeded_job("flaky")
    runner = rig.runner(flaky=flaky)
    await runner.run_until_idle()
    assert (await rig.wait_for_state(task.id, TaskState.DEAD)).attempts == 1
    healthy = True
    revived = await rig.store.retry_task(task.id)
    assert revived.state is TaskState.PENDING and revived.attempts == 0
    await runner.run_until_idle()
    assert (await rig.wait_for_state(task.id, TaskState.SUCCEEDED)).attempts == 1


async def test_the_task_runner_drops_tasks_queued_before_the_cancel(rig: Rig) -> None:
    async def notify(job: Job, transition: Transition, context: HandlerContext) -> None:
        return None

    runner = rig.runner(notify=notify)
    job = await rig.store.create_job(kind="text_to_video", params={"prompt": "x"})
    await rig.store.update_job(job.id, video_id=1)
    with rig.planner.planning(plans("notify")):
        result = await rig.store.apply_transition(job.id, JobState.GENERATING,
                                                  source=TransitionSource.SUBMIT)
    [task] = result.tasks
    await rig.store.cancel_job(job.id)
    await runner.run_until_idle()
    assert ScriptedHandler.calls == []
    dropped = await rig.store.get_task(task.id)
    assert dropped is not None
    assert (dropped.state, dropped.last_error) == (TaskState.DEAD, "job cancelled")
    [run] = await rig.store.list_task_runs(task.id)
    assert (run.outcome, run.error) == (TaskRunOutcome.DEAD, "job cancelled")
