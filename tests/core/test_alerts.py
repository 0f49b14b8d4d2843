"""Alerts on both databases: the shared alerts table (raised once, notified once per interval
by whichever process claims it, cleared once after a quiet window) and the monitor's
database-side causes: dead tasks, a stale queue, a stuck submission."""

from __future__ import annotations

import dataclasses
import json
import logging

import httpx
import pytest

from service.alerts import TITLES, AlertMonitor, Cause
from service.lifecycle import JobState
from service.metrics import Metrics
from service.settings import Settings
from service.store import Store
from tests.core.conftest import FakeClock
from tests.support.planner import Planner, plans


async def test_raise_notify_once_per_interval_and_clear_once(store: Store) -> None:
    first = await store.raise_alert("dead_tasks", "1 dead", 100.0)
    assert (first.raised_at, first.notified_at, first.cleared_at) == (100.0, None, None)
    assert await store.claim_alert_notification("dead_tasks", 100.0, 60.0)
    assert not await store.claim_alert_notification("dead_tasks", 101.0, 60.0)  # another
    again = await store.raise_alert("dead_tasks", "2 dead", 150.0)
    assert (again.raised_at, again.last_seen_at, again.detail) == (100.0, 150.0, "2 dead")
    assert await store.claim_alert_notification("dead_tasks", 160.0, 60.0)  # a reminder
    assert [a.cause for a in await store.active_alerts()] == ["dead_tasks"]
    assert await store.clear_alert("dead_tasks", 170.0, quiet_since=140.0) is None  # seen
    cleared = await store.clear_alert("dead_tasks", 200.0, quiet_since=160.0)
    assert cleared is not None and cleared.cleared_at == 200.0
    assert await store.clear_alert("dead_tasks", 201.0, quiet_since=200.0) is None  # once
    assert await store.active_alerts() == []
    reraised = await store.raise_alert("dead_tasks", "3 dead", 300.0)
    assert (reraised.raised_at, reraised.notified_at, reraised.cleared_at) == (300.0, None, None)


async def test_monitor_sees_dead_tasks_a_stale_queue_and_a_stuck_submission(
        store: Store, clock: FakeClock, planner: Planner,
        caplog: pytest.LogCaptureFixture) -> None:
    settings = dataclasses.replace(Settings(), alert_queue_age=60.0, alert_submit_stuck=120.0,
                                   alert_clear_after=30.0)
    monitor = AlertMonitor(store, settings, Metrics(), clock=clock)
    await monitor.check()
    assert monitor.active == []
    store.bind(planner=planner)
    stuck = await store.create_job(kind="text_to_video", params={})
    planner.plan = plans("download")
    await store.apply_transition(stuck.id, JobState.SUBMITTING, source="submit")
    clock.advance(200.0)
    with caplog.at_level(logging.WARNING, logger="service.alerts"):
        await monitor.check()
    raised = {alert.cause: alert.detail for alert in monitor.active}
    assert set(raised) == {Cause.QUEUE_STALE, Cause.SUBMITTER_STUCK}
    assert f"job {stuck.id} has been submitting for 200 s" in raised[Cause.SUBMITTER_STUCK]
    assert sum("ALERT" in r.message for r in caplog.records) == 2
    # The task dies: dead tasks; the queue is empty again.
    task, = await store.claim_tasks(clock.now, limit=1, lease_seconds=60)
    await store.fail_task(task.id, error="gave up", retry_at=None, attempt=task.attempts)
    await monitor.check()
    assert {a.cause for a in monitor.active} == {Cause.QUEUE_STALE, Cause.SUBMITTER_STUCK,
                                                 Cause.DEAD_TASKS}
    clock.advance(31.0)  # the queue has been quiet for longer than the clear window
    await monitor.check()
    assert {a.cause for a in monitor.active} == {Cause.SUBMITTER_STUCK, Cause.DEAD_TASKS}


async def test_slack_hears_of_an_alert_only_once_metrics_and_banner_say_so(
        store: Store, clock: FakeClock, planner: Planner) -> None:
    """Whoever reads a Slack message and then looks at /metrics or the dashboard sees what
    the message says: the state is refreshed before the message goes out (CI once read the
    gauge between the "recovered" post and its update)."""
    settings = dataclasses.replace(Settings(), alert_queue_age=60.0, alert_clear_after=30.0,
                                   alert_slack_url="http://slack.invalid/services/T/B/x")
    metrics = Metrics()
    heard: list[tuple[str, float | None, list[str]]] = []
    monitor: AlertMonitor

    def slack(request: httpx.Request) -> httpx.Response:
        text = json.loads(request.content)["text"]
        heard.append((text, metrics.alerts.value(cause=Cause.QUEUE_STALE.value),
                      [alert.cause for alert in monitor.active]))
        return httpx.Response(200, text="ok")

    async with httpx.AsyncClient(transport=httpx.MockTransport(slack)) as http:
        monitor = AlertMonitor(store, settings, metrics, http=http, clock=clock)
        store.bind(planner=planner)
        job = await store.create_job(kind="text_to_video", params={})
        planner.plan = plans("download")
        await store.apply_transition(job.id, JobState.SUBMITTING, source="submit")
        clock.advance(61.0)
        await monitor.check()
        task, = await store.claim_tasks(clock.now, limit=1, lease_seconds=60)
        await store.complete_task(task.id)
        clock.advance(31.0)
        await monitor.check()
    stale = [(value, active) for text, value, active in heard
             if TITLES[Cause.QUEUE_STALE] in text]
    assert stale == [(1.0, [Cause.QUEUE_STALE]), (0.0, [])]
