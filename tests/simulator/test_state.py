"""The state and its job clock, in-process (no HTTP): scale, ordering, wake-ups."""

from __future__ import annotations

import asyncio
import time

from service.simulator.api import Sources, new_job
from service.simulator.calls import Caller
from service.simulator.scheduler import DueHeap
from service.simulator.state import SimulatorState
from tests.simulator.helpers import KEY, TEXT_BODY, RecordingDispatcher, make_config


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_state(**overrides: object) -> tuple[SimulatorState, RecordingDispatcher, FakeClock]:
    clock = FakeClock()
    dispatcher = RecordingDispatcher()
    state = SimulatorState(make_config(**overrides), dispatcher, clock=clock)
    return state, dispatcher, clock


def submit(state: SimulatorState, prompt: str = "a lake") -> int:
    caller = Caller(KEY, f"t-{time.monotonic_ns()}", "http://sim")
    charged = state.charge(KEY, 1)
    assert charged is not None
    payload = {**TEXT_BODY, "prompt": prompt}
    return new_job(state, caller, "text_to_video", payload, Sources(), 1, charged,
                   texts=[prompt]).id


def test_ten_thousand_jobs_finish_by_one_advance_cheaply() -> None:
    state, dispatcher, clock = make_state(generation_seconds=1.0)
    state.config.accounts[KEY].credit_monthly = 10**9
    ids = [submit(state) for _ in range(10_000)]
    assert state.running_count(KEY) == 10_000
    clock.now += 0.999
    state.advance()
    assert dispatcher.published == []
    clock.now += 0.001
    started = time.perf_counter()
    state.advance()
    assert time.perf_counter() - started < 2.0
    assert state.running_count(KEY) == 0
    assert [int(p["payload"]["id"]) for p in dispatcher.published] == ids
    state.advance()
    assert len(dispatcher.published) == 10_000


def test_outcomes_are_planned_from_words_then_seeded_rates() -> None:
    state, _, _ = make_state(random_failure_rate=0.5, outcome_seed=1)
    assert state.plan_outcome(["An NSFW thing"]) == 7
    assert state.plan_outcome(["fail-me"]) == 8
    draws = [state.plan_outcome(["calm"]) for _ in range(40)]
    again, _, _ = make_state(random_failure_rate=0.5, outcome_seed=1)
    assert draws == [again.plan_outcome(["calm"]) for _ in range(40)]
    assert set(draws) == {1, 8}


def test_charge_takes_monthly_then_package_and_refuses_when_short() -> None:
    state, _, _ = make_state()
    account = state.config.accounts[KEY]
    account.credit_monthly, account.credit_package = 10, 5
    assert state.charge(KEY, 12) == (10, 2)
    assert state.charge(KEY, 4) is None
    assert (account.credit_monthly, account.credit_package) == (0, 3)


async def test_the_scheduler_wakes_for_an_earlier_job() -> None:
    heap = DueHeap()
    fired: list[int] = []
    loop = asyncio.get_running_loop()

    def tick() -> None:
        fired.extend(heap.pop_due(loop.time()))

    task = asyncio.create_task(heap.run(tick, loop.time))
    try:
        heap.push(loop.time() + 60, 1)
        await asyncio.sleep(0.01)
        heap.push(loop.time() + 0.05, 2)  # earlier than the sleeping deadline
        await asyncio.wait_for(_until(lambda: fired == [2]), 2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _until(condition) -> None:  # type: ignore[no-untyped-def]
    while not condition():
        await asyncio.sleep(0.005)
