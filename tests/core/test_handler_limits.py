"""Per-handler concurrency limits (issue 19, point 3): a handler at its limit does not hold
the other handlers' tasks back, and no handler ever has more runs under way than its limit."""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from service.handler_api import BaseHandler, HandlerContext, Job, Transition
from service.lifecycle import JobState, TransitionSource
from service.registry import HandlerConfigError, HandlerSet
from service.settings import Settings
from service.store import Store, TaskState
from service.worker import TaskRunner
from tests.core.conftest import Backend
from tests.support.planner import Planner, plans
from tests.support.processes import pixhook_env, until

REPO = Path(__file__).resolve().parents[2]


async def queued(store: Store, planner: Planner, handler: str) -> int:
    """A succeeded job with one task for ``handler``; the task's id."""
    job = await store.create_job(kind="text_to_video", params={"prompt": "p"})
    with planner.planning(plans(handler)):
        result = await store.apply_transition(job.id, JobState.SUCCEEDED,
                                              source=TransitionSource.WEBHOOK)
    [task] = result.tasks
    return task.id


def install_plugin(directory: Path) -> None:
    """``tests.core.limits_plugin``'s handlers as an installed package registers them."""
    info = directory / "pixhook_limits_test-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pixhook-limits-test\n"
                                   "Version: 0\n")
    (info / "entry_points.txt").write_text(
        "[pixhook.handlers]\nslow = tests.core.limits_plugin:SlowHandler\n"
        "quick = tests.core.limits_plugin:QuickHandler\n")


async def states(store: Store, ids: list[int]) -> collections.Counter[TaskState]:
    found = collections.Counter[TaskState]()
    for task_id in ids:
        task = await store.get_task(task_id)
        assert task is not None
        found[task.state] += 1
    return found


async def _all(store: Store, ids: list[int], state: TaskState) -> bool:
    return (await states(store, ids))[state] == len(ids)


async def test_a_handler_at_its_limit_does_not_hold_back_the_others(
        backend: Backend, tmp_path: Path) -> None:
    """A real ``pixhook worker`` with 8 slots; ``slow`` (limit 2, from the environment) has
    the 10 oldest tasks and holds its runs, ``quick`` (limit 3, its own) has 6 newer ones.
    Before: the runner's one pool took the 8 oldest tasks, all slow, and quick's waited."""
    plugin, talk = tmp_path / "plugin", tmp_path / "talk"
    install_plugin(plugin)
    talk.mkdir()
    planner = Planner()
    async with backend.new_store(planner=planner) as store:
        slow = [await queued(store, planner, "slow") for _ in range(10)]
        quick = [await queued(store, planner, "quick") for _ in range(6)]
        env = pixhook_env(
            database_url=backend.url, sim_url="http://127.0.0.1:9", webhook_secret="secret",
            tmp_path=tmp_path, PYTHONPATH=f"{REPO}{os.pathsep}{plugin}",
            PIXHOOK_HANDLERS="slow,quick", PIXHOOK_TASK_CONCURRENCY="8",
            PIXHOOK_HANDLER_SLOW_CONCURRENCY="2", PIXHOOK_HANDLER_SLOW_DIR=str(talk),
            PIXHOOK_HANDLER_QUICK_DIR=str(talk), PIXHOOK_LOG_LEVEL="warning")
        worker = subprocess.Popen([sys.executable, "-m", "service", "worker"], cwd=tmp_path,
                                  env=env)
        try:
            async def started(name: str, count: int) -> bool:
                assert worker.poll() is None, "the worker process died"
                return len(list(talk.glob(f"{name}-*.started"))) >= count

            await until(lambda: started("slow", 2), "slow's first two runs")
            await until(lambda: started("quick", 3), "quick's first three runs, beside slow's")
            (talk / "quick.release").touch()
            await until(lambda: _all(store, quick, TaskState.SUCCEEDED),
                        "quick's six tasks to succeed")
            # Slow still holds its two slots, and has started nothing more.
            assert await states(store, slow) == {TaskState.RUNNING: 2, TaskState.PENDING: 8}
            assert len(list(talk.glob("slow-*.started"))) == 2
            (talk / "slow.release").touch()
            await until(lambda: _all(store, slow, TaskState.SUCCEEDED),
                        "slow's ten tasks to succeed")
        finally:
            worker.terminate()
            worker.wait(15)
    # Counted in the worker: each handler reached its limit and never went over it.
    assert (talk / "slow.peak").read_text() == "2"
    assert (talk / "quick.peak").read_text() == "3"


@dataclasses.dataclass
class Tally:
    """Runs under way, by handler and in all, and the most seen at once."""

    running: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    peak: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    def enter(self, name: str) -> None:
        self.running[name] += 1
        self.running["*"] += 1
        for key in (name, "*"):
            self.peak[key] = max(self.peak[key], self.running[key])

    def leave(self, name: str) -> None:
        self.running[name] -= 1
        self.running["*"] -= 1


class Counted(BaseHandler):
    tally: ClassVar[Tally]

    def __init__(self, settings: Settings, options: Mapping[str, Any], name: str,
                 concurrency: int | None) -> None:
        super().__init__(settings, options)
        self.name = name  # type: ignore[misc]
        if concurrency is not None:
            self.concurrency = concurrency  # type: ignore[misc]

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        self.tally.enter(self.name)
        try:
            await asyncio.sleep(0.02)
        finally:
            self.tally.leave(self.name)


async def test_no_handler_ever_has_more_runs_than_its_limit(backend: Backend) -> None:
    """Three handlers (limits 1 and 2, and the default, above the runner's 6 slots), eight
    tasks each, queued in turn. Before: the claims took the six most overdue tasks, two of
    each handler, whatever their handler."""
    Counted.tally = Tally()
    limits = {"one": 1, "two": 2, "many": None}
    settings = Settings(database_url=backend.url, handlers=tuple(limits), task_concurrency=6)
    factories = {name: (lambda n, c: lambda s, o: Counted(s, o, n, c))(name, limit)
                 for name, limit in limits.items()}
    handlers = HandlerSet.from_settings(settings, available=factories)
    planner = Planner()
    async with backend.new_store(planner=planner) as store, httpx.AsyncClient() as http:
        ids = [await queued(store, planner, name) for _ in range(8) for name in limits]

        async def submit(*args: Any, **kwargs: Any) -> Job:
            raise AssertionError("not used here")

        runner = TaskRunner(store, handlers, settings, http=http, submit=submit)
        stop = asyncio.Event()
        loop = asyncio.create_task(runner.run(stop))
        try:
            await until(lambda: _all(store, ids, TaskState.SUCCEEDED), "every task to succeed")
        finally:
            stop.set()
            await asyncio.wait_for(loop, 15)
    peak = Counted.tally.peak
    # Never over a limit (reaching one depends on timing: on a loaded machine the runs may not
    # overlap).
    assert peak["one"] <= 1 and peak["two"] <= 2, peak
    assert peak["many"] <= 6 and peak["*"] <= 6, peak


def test_a_handlers_limit_comes_from_its_config_then_its_class_then_the_default() -> None:
    class Own(BaseHandler):
        name: ClassVar[str] = "own"
        concurrency: ClassVar[int] = 3

    class Plain(BaseHandler):
        name: ClassVar[str] = "plain"

    available = {"own": Own, "plain": Plain}
    settings = Settings.load({"PIXHOOK_HANDLERS": "own,plain"}, toml_path="/nonexistent")
    handlers = HandlerSet.from_settings(settings, available=available)
    assert [handlers.get(n).concurrency for n in ("own", "plain")] == [3, 16]  # type: ignore[union-attr]
    settings = Settings.load({"PIXHOOK_HANDLERS": "own,plain",
                              "PIXHOOK_HANDLER_OWN_CONCURRENCY": "5"}, toml_path="/nonexistent")
    handlers = HandlerSet.from_settings(settings, available=available)
    own = handlers.get("own")
    assert own is not None and own.concurrency == 5 and "concurrency" not in own.options
    for bad in ("0", "-1", "many", "2.5"):
        settings = Settings.load({"PIXHOOK_HANDLERS": "own",
                                  "PIXHOOK_HANDLER_OWN_CONCURRENCY": bad},
                                 toml_path="/nonexistent")
        with pytest.raises(HandlerConfigError, match="concurrency"):
            HandlerSet.from_settings(settings, available=available)
