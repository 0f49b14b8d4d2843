"""Alerts: say loudly when the zero-polling promise breaks.

Every process runs an :class:`AlertMonitor` that looks, every ``PIXHOOK_ALERT_CHECK_INTERVAL``
seconds, for five causes:

=========================  ================================================================
cause                      seen when (and the likely cause the alert names)
=========================  ================================================================
``webhooks_not_arriving``  the reconciler moved jobs by polling (``PIXHOOK_POLL_MODE=
                           fallback``): their webhooks did not come (webhook URL not set
                           at PixVerse, the service unreachable, webhooks refused)
``signature_failures``     webhooks refused for a bad signature: the secret is wrong or was
                           rotated at PixVerse
``dead_tasks``             handler tasks gave up (``pixhook tasks --state dead``)
``queue_stale``            a due handler task has waited ``PIXHOOK_ALERT_QUEUE_AGE``: no
                           worker, or workers too slow or too few
``submitter_stuck``        a job has been ``submitting`` for ``PIXHOOK_ALERT_SUBMIT_STUCK``:
                           PixVerse unreachable, or the worker stuck on it
=========================  ================================================================

A cause seen is raised in the shared ``alerts`` table (:mod:`service.store.alerts`); then,
at most once per ``PIXHOOK_ALERT_INTERVAL`` per cause for the whole deployment: a WARNING
line and, with ``PIXHOOK_ALERT_SLACK_URL``, a Slack message. While raised it shows as a
banner on every dashboard page and as ``pixhook_alert_active{cause=...} 1``. A cause nobody
has seen for ``PIXHOOK_ALERT_CLEAR_AFTER`` is cleared, and "recovered" is said the same ways
(as Svix's ``message.attempt.recovered``).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable
from typing import Final

import httpx

from service.metrics import Metrics
from service.settings import Settings
from service.store import Store, TaskState
from service.store.alerts import AlertRecord

logger = logging.getLogger(__name__)


class Cause(enum.StrEnum):
    WEBHOOKS_NOT_ARRIVING = "webhooks_not_arriving"
    SIGNATURE_FAILURES = "signature_failures"
    DEAD_TASKS = "dead_tasks"
    QUEUE_STALE = "queue_stale"
    SUBMITTER_STUCK = "submitter_stuck"


TITLES: Final = {
    Cause.WEBHOOKS_NOT_ARRIVING: "Webhooks are not arriving",
    Cause.SIGNATURE_FAILURES: "Webhook signatures fail",
    Cause.DEAD_TASKS: "Handler tasks are dead",
    Cause.QUEUE_STALE: "The task queue is not moving",
    Cause.SUBMITTER_STUCK: "The submitter is stuck",
}

#: Seconds a Slack post may take; a slow Slack must not hold the checks up.
NOTIFY_TIMEOUT_SECONDS: Final = 10.0


class AlertMonitor:
    """One process's look at the causes; :attr:`active` is the deployment's raised alerts
    as last read (the dashboard banner shows them)."""

    def __init__(self, store: Store, settings: Settings, metrics: Metrics, *,
                 http: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._settings = settings
        self._metrics = metrics
        self._http = http
        self._clock = clock
        self.active: list[AlertRecord] = []
        self._last_check = clock()
        # Counters at the last check: what happened since is the difference.
        self._bad_signatures = 0.0
        self._poll_heals = 0.0
        for cause in Cause:
            metrics.alerts.set(0.0, cause=cause.value)

    async def run(self, stop: asyncio.Event) -> None:
        """Check every ``PIXHOOK_ALERT_CHECK_INTERVAL`` seconds until ``stop`` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._settings.alert_check_interval)
            if stop.is_set():
                return
            try:
                await self.check()
            except Exception:
                logger.exception("checking alerts failed", extra={"action": "alert"})

    async def check(self) -> None:
        """Look at every cause once: raise, clear, refresh :attr:`active` and the gauge; then
        notify. The state comes first so that whoever reads a Slack message and then looks
        at /metrics or the dashboard sees what the message says, and a slow Slack holds
        nothing up."""
        now = self._clock()
        seen = await self._observe(now)
        messages: list[str] = []
        for cause, detail in seen.items():
            await self._store.raise_alert(cause, detail, now)
            if await self._store.claim_alert_notification(cause, now,
                                                          self._settings.alert_interval):
                logger.warning("ALERT %s: %s", TITLES[cause], detail,
                               extra={"action": "alert", "outcome": cause.value})
                messages.append(f":rotating_light: pixhook: {TITLES[cause]}. {detail}")
        quiet_since = now - self._settings.alert_clear_after
        for cause in Cause:
            if cause in seen:
                continue
            cleared = await self._store.clear_alert(cause, now, quiet_since)
            if cleared is not None:
                logger.info("RECOVERED %s (raised %.0f s ago)", TITLES[cause],
                            now - cleared.raised_at,
                            extra={"action": "alert", "outcome": "recovered"})
                messages.append(f":white_check_mark: pixhook recovered: {TITLES[cause]} "
                                f"(raised {now - cleared.raised_at:.0f} s ago).")
        self.active = await self._store.active_alerts()
        raised = {alert.cause for alert in self.active}
        for cause in Cause:
            self._metrics.alerts.set(1.0 if cause in raised else 0.0, cause=cause.value)
        for text in messages:
            await self._notify(text)

    async def _observe(self, now: float) -> dict[Cause, str]:
        """The causes seen now, each with what was seen and its likely cause."""
        window = max(1.0, now - self._last_check)
        self._last_check = now
        seen: dict[Cause, str] = {}
        bad = self._metrics.webhooks.value(outcome="bad_signature")
        if bad > self._bad_signatures:
            seen[Cause.SIGNATURE_FAILURES] = (
                f"{bad - self._bad_signatures:.0f} webhook(s) refused for a bad signature in "
                f"the last {window:.0f} s: PIXVERSE_WEBHOOK_SECRET is probably wrong, or the "
                "secret was rotated at PixVerse (the log names each video id)")
        self._bad_signatures = bad
        heals = self._metrics.transitions.sum(source="poll", outcome="applied")
        if heals > self._poll_heals and self._settings.poll_mode == "fallback":
            seen[Cause.WEBHOOKS_NOT_ARRIVING] = (
                f"the reconciler moved {heals - self._poll_heals:.0f} job(s) by polling in the "
                f"last {window:.0f} s: their webhooks did not arrive; check the webhook URL "
                "set at PixVerse, that it reaches this service, and that webhooks are not "
                "refused")
        self._poll_heals = heals
        dead = (await self._store.count_tasks_by_state([TaskState.DEAD])).get(TaskState.DEAD, 0)
        if dead:
            seen[Cause.DEAD_TASKS] = (
                f"{dead} handler task(s) gave up after every retry: see `pixhook tasks "
                "--state dead` for their errors, then `pixhook tasks retry ID`")
        due = await self._store.oldest_due_task()
        if due is not None and now - due > self._settings.alert_queue_age:
            seen[Cause.QUEUE_STALE] = (
                f"a handler task has waited {now - due:.0f} s for a worker: is a worker "
                "running (`pixhook workers`), and are there enough of them?")
        stuck = await self._store.oldest_submitting()
        if stuck is not None and now - stuck.state_changed_at > self._settings.alert_submit_stuck:
            seen[Cause.SUBMITTER_STUCK] = (
                f"job {stuck.id} has been submitting for {now - stuck.state_changed_at:.0f} s "
                f"(last error: {stuck.last_error or 'none recorded'}): PixVerse unreachable "
                "or refusing, or the worker stuck on it")
        return seen

    async def _notify(self, text: str) -> None:
        url = self._settings.alert_slack_url
        if not url or self._http is None:
            return
        try:
            response = await self._http.post(url, json={"text": text},
                                              timeout=NOTIFY_TIMEOUT_SECONDS)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            logger.warning("posting an alert to Slack failed: %s", type(exc).__name__,
                           extra={"action": "alert"})
