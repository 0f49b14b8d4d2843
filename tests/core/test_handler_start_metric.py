"""``pixhook_webhook_to_handler_start_seconds`` times a task's first run only: a dead task run
again by hand (`pixhook tasks retry`) is not a new start, however long it waited."""

from __future__ import annotations

from service.handler_api import HandlerContext, Job, PermanentError, Transition
from service.metrics import Metrics
from service.store import TaskState
from tests.core.test_worker import Rig, rig, running  # noqa: F401 - a fixture


async def test_a_manual_retry_is_not_a_first_start(rig: Rig) -> None:  # noqa: F811
    fail = [True]

    async def flaky(job: Job, transition: Transition, context: HandlerContext) -> None:
        if fail[0]:
            raise PermanentError("not yet")

    runner = rig.runner(flaky=flaky)
    runner.metrics = metrics = Metrics()
    _, [task] = await rig.succeeded_job("flaky")
    async with running(runner):
        await rig.wait_for_state(task.id, TaskState.DEAD)
        assert metrics.handler_start_seconds.count == 1
        fail[0] = False
        await rig.store.retry_task(task.id)
        await rig.wait_for_state(task.id, TaskState.SUCCEEDED)
    assert metrics.handler_start_seconds.count == 1
    assert len(runner.start_delays) == 1
