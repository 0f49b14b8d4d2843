"""Process metrics in the Prometheus text format, without a client library.

pixhook needs three instrument types and one output format, which fit in this module; a
dependency would bring a global registry (awkward with several apps per test process) and
multiprocess machinery we do not use. One :class:`Metrics` per process is passed to the
receiver, the submitter, the reconciler and the task runner, which count what they do;
``GET /metrics`` (:mod:`service.health`) first reads the queue and job counts from the store
(:meth:`Metrics.collect`), so those gauges are true for the whole deployment, then renders.

Counters are per process: with split ``web`` and ``worker`` processes, scrape both.

==============================================  =============================================
series                                          what it counts
==============================================  =============================================
``pixhook_webhooks_total{outcome}``             webhook requests by answer (see below)
``pixhook_transitions_total{state,source,...}`` every transition this process recorded, by
                                                proposed state, source and outcome
``pixhook_status_polls_total``                  status calls to PixVerse (zero while webhooks
                                                flow)
``pixhook_handler_runs_total{handler,outcome}`` finished task runs: succeeded, retry, dead,
                                                deferred, lost
``pixhook_tasks{state}``                        pending, running and dead tasks (store)
``pixhook_jobs{state}``                         jobs by state (from the store)
``pixhook_webhook_handling_seconds``            time to answer a webhook request
``pixhook_webhook_to_handler_start_seconds``    a task's commit (with its transition) to its
                                                first run starting
==============================================  =============================================

Webhook outcomes: ``ok`` (applied), ``duplicate`` (a nonce seen before, or a state the job
already had), ``ignored`` (late or out of order), ``orphan``, ``unknown_status`` (validly
signed, kept and answered ``ok``, but a status code this version does not know: no job
changed), ``unreadable_event`` (likewise, but its id or status is not of the documented
type), ``bad_signature``, ``stale``, ``malformed``, ``too_large``, ``unsupported_media``,
``body_timeout`` (the body did not arrive within ``PIXHOOK_BODY_TIMEOUT``: 408),
``client_disconnected`` (the sender hung up mid-body), ``unconfigured`` and ``unavailable``
(the store failed).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final, TypeVar

from service import process_metrics
from service.lifecycle import JobState
from service.store import Store, TaskState, TransitionResult

#: The media type of the text exposition format this module writes.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

#: Latency buckets in seconds, 1 ms to 10 s.
LATENCY_BUCKETS_SECONDS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                  1.0, 2.5, 5.0, 10.0)
#: Queue-wait buckets in seconds, 5 ms to 10 min: a task may wait behind others for long.
QUEUE_WAIT_BUCKETS_SECONDS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                                     10.0, 30.0, 60.0, 300.0, 600.0)

#: Task states the ``pixhook_tasks`` gauge shows; succeeded tasks are history, not queue, and
#: counting them would make every scrape cost more as the history grows.
QUEUE_STATES: Final = (TaskState.PENDING, TaskState.RUNNING, TaskState.DEAD)

#: The receiver's own outcome names -> the ``outcome`` label of ``pixhook_webhooks_total``.
WEBHOOK_OUTCOMES: Final[Mapping[str, str]] = {
    "ok": "ok",
    "replayed": "duplicate",  # the nonce was used before: 409
    "duplicate": "duplicate",  # a fresh nonce, but the job already had that state
    "ignored": "ignored",
    "orphan": "orphan",
    "unknown_status": "unknown_status",  # signed, kept, answered ok; no job changed
    "unreadable_event": "unreadable_event",  # likewise, for an id or status of the wrong type
    "bad_signature": "bad_signature",
    "stale": "stale",
    "malformed": "malformed",
    "too_large": "too_large",
    "wrong_content_type": "unsupported_media",
    "body_timeout": "body_timeout",  # 408: PIXHOOK_BODY_TIMEOUT passed mid-body
    "client_disconnected": "client_disconnected",  # hung up mid-body; nobody to answer
    "unconfigured": "unconfigured",
    "store_error": "unavailable",
}

LabelValues = tuple[str, ...]
_M = TypeVar("_M", bound="_Metric")


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)


def _escape_label(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{name}="{_escape_label(value)}"'
                     for name, value in zip(names, values, strict=True))
    return "{" + pairs + "}"


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help
        self.label_names = tuple(labels)

    def _key(self, labels: Mapping[str, str]) -> LabelValues:
        if set(labels) != set(self.label_names):
            raise ValueError(f"{self.name} takes labels {self.label_names}, got {sorted(labels)}")
        return tuple(str(labels[name]) for name in self.label_names)

    def lines(self) -> Iterator[str]:
        yield f"# HELP {self.name} {_escape_help(self.help)}"
        yield f"# TYPE {self.name} {self.kind}"
        yield from self._samples()

    def _samples(self) -> Iterator[str]:
        raise NotImplementedError


class Counter(_Metric):
    """A number that only goes up, per label set. ``name`` should end in ``_total``."""

    kind = "counter"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[LabelValues, float] = {}
        if not self.label_names:
            self._values[()] = 0.0

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        key = self._key(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def declare(self, **labels: str) -> None:
        """Show a label set at zero before it first happens, so rates start from it."""
        self._values.setdefault(self._key(labels), 0.0)

    def value(self, **labels: str) -> float:
        return self._values.get(self._key(labels), 0.0)

    def sum(self, **labels: str) -> float:
        """The total of every label set that has these values (others: any)."""
        wanted = [(self.label_names.index(name), value) for name, value in labels.items()]
        return sum(count for key, count in self._values.items()
                   if all(key[i] == value for i, value in wanted))

    def _samples(self) -> Iterator[str]:
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{_labels(self.label_names, key)} {_format_value(value)}"


class Gauge(_Metric):
    """A value read at scrape time; :meth:`replace` swaps in a whole new reading."""

    kind = "gauge"

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[LabelValues, float] = {}

    def set(self, value: float, **labels: str) -> None:
        self._values[self._key(labels)] = value

    def replace(self, readings: Iterable[tuple[Mapping[str, str], float]]) -> None:
        """Forget every label set and keep only ``readings``."""
        self._values = {self._key(labels): value for labels, value in readings}

    def clear(self) -> None:
        self._values = {}

    def value(self, **labels: str) -> float | None:
        return self._values.get(self._key(labels))

    def _samples(self) -> Iterator[str]:
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{_labels(self.label_names, key)} {_format_value(value)}"


class Histogram(_Metric):
    """Observations counted into fixed, cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help: str,
                 buckets: Sequence[float] = LATENCY_BUCKETS_SECONDS) -> None:
        super().__init__(name, help)
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError("buckets must be distinct and increasing")
        self.buckets = tuple(float(b) for b in buckets if not math.isinf(b))
        self._counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self._counts[i] += 1
                break
        else:
            self._counts[-1] += 1
        self.sum += value
        self.count += 1

    def _samples(self) -> Iterator[str]:
        cumulative = 0
        bounds = [*(repr(b) for b in self.buckets), "+Inf"]
        for bound, count in zip(bounds, self._counts, strict=True):
            cumulative += count
            yield f'{self.name}_bucket{{le="{bound}"}} {cumulative}'
        yield f"{self.name}_sum {_format_value(self.sum)}"
        yield f"{self.name}_count {self.count}"


class Registry:
    """The metrics one process exposes, rendered in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, _Metric] = {}

    def _add(self, metric: _M) -> _M:
        if metric.name in self._metrics:
            raise ValueError(f"{metric.name} is registered twice")
        self._metrics[metric.name] = metric
        return metric

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        return self._add(Counter(name, help, labels))

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        return self._add(Gauge(name, help, labels))

    def histogram(self, name: str, help: str,
                  buckets: Sequence[float] = LATENCY_BUCKETS_SECONDS) -> Histogram:
        return self._add(Histogram(name, help, buckets))

    def render(self) -> str:
        """Every metric in the text exposition format 0.0.4."""
        lines = [line for metric in self._metrics.values() for line in metric.lines()]
        return "\n".join(lines) + "\n"


class Metrics:
    """pixhook's metrics for one process. Components take it as ``metrics=`` (``None``: not
    counted) and call the ``record_*`` methods; ``GET /metrics`` calls :meth:`collect` and
    :meth:`render`."""

    def __init__(self) -> None:
        self.registry = Registry()
        r = self.registry
        self.webhooks = r.counter("pixhook_webhooks_total",
                                  "Webhook requests received, by outcome.", ("outcome",))
        for outcome in sorted(set(WEBHOOK_OUTCOMES.values())):
            self.webhooks.declare(outcome=outcome)
        self.transitions = r.counter(
            "pixhook_transitions_total",
            "Transitions recorded by this process, by proposed state, source and outcome "
            "(applied, duplicate, ignored).", ("state", "source", "outcome"))
        self.status_polls = r.counter("pixhook_status_polls_total",
                                      "Status calls made to PixVerse by the reconciler.")
        self.handler_runs = r.counter(
            "pixhook_handler_runs_total",
            "Finished handler task runs, by handler and outcome (succeeded, retry, dead, "
            "deferred, lost).", ("handler", "outcome"))
        self.tasks = r.gauge("pixhook_tasks",
                             "Handler tasks by state: pending, running, dead (queue depth).",
                             ("state",))
        self.jobs = r.gauge("pixhook_jobs", "Jobs, by state.", ("state",))
        self.alerts = r.gauge(
            "pixhook_alert_active",
            "1 while an alert's cause is active (service/alerts.py), by cause; 0 otherwise.",
            ("cause",))
        self.build_info = r.gauge("pixhook_build_info",
                                  "Always 1; the labels say which pixhook this is.",
                                  tuple(process_metrics.build_labels()))
        self.build_info.set(1.0, **process_metrics.build_labels())
        self.process = {name: r.gauge(name, help) for name, help in (
            ("process_cpu_seconds_total", "User and system CPU time spent, in seconds."),
            ("process_resident_memory_bytes", "Resident memory size, in bytes."),
            ("process_open_fds", "Open file descriptors."),
            ("process_max_fds", "The soft limit of open file descriptors."),
            ("process_start_time_seconds", "When the process started, in Unix seconds."))}
        self.worker_heartbeat_age = r.gauge(
            "pixhook_worker_heartbeat_age_seconds",
            "Seconds since any worker's newest heartbeat (absent: no worker ever beat).")
        self.oldest_task_age = r.gauge(
            "pixhook_oldest_queued_task_age_seconds",
            "Seconds the longest-waiting due handler task has waited (0: none waiting).")
        self.collect_errors = r.counter(
            "pixhook_metrics_collect_errors_total",
            "Scrapes whose store reading failed (the store gauges are left out then).")
        self.webhook_seconds = r.histogram(
            "pixhook_webhook_handling_seconds",
            "Time from a webhook request arriving to its answer, in seconds.")
        self.handler_start_seconds = r.histogram(
            "pixhook_webhook_to_handler_start_seconds",
            "Time from a task being committed with its transition (for a webhook: its "
            "arrival) to the task's first run starting, in seconds.",
            QUEUE_WAIT_BUCKETS_SECONDS)

    # -- what components record ------------------------------------------------------------

    def record_webhook(self, outcome: str, seconds: float) -> None:
        """One webhook request answered; ``outcome`` is the receiver's own name for it."""
        self.webhooks.inc(outcome=WEBHOOK_OUTCOMES.get(outcome, outcome))
        self.webhook_seconds.observe(seconds)

    def record_transition(self, result: TransitionResult) -> None:
        transition = result.transition
        self.transitions.inc(state=transition.to_state.value, source=transition.source.value,
                             outcome=result.outcome.value)

    def record_job_created(self) -> None:
        """A job was created in ``queued``: its first transition (source ``submit``)."""
        self.transitions.inc(state=JobState.QUEUED.value, source="submit", outcome="applied")

    def record_status_poll(self) -> None:
        self.status_polls.inc()

    def record_handler_run(self, handler: str, outcome: str) -> None:
        self.handler_runs.inc(handler=handler, outcome=outcome)

    def record_handler_start(self, delay_seconds: float) -> None:
        self.handler_start_seconds.observe(max(0.0, delay_seconds))

    # -- scraping ---------------------------------------------------------------------------

    async def collect(self, store: Store) -> None:
        """Read the queue and job counts from the store into the gauges. If the store fails,
        the gauges are emptied (never left stale), the failure is counted and re-raised."""
        try:
            tasks = await store.count_tasks_by_state(QUEUE_STATES)
            jobs = await store.count_jobs_by_state()
            newest_beat = await store.newest_worker_beat()
            oldest_due = await store.oldest_due_task()
        except Exception:
            self.tasks.clear()
            self.jobs.clear()
            self.worker_heartbeat_age.clear()
            self.oldest_task_age.clear()
            self.collect_errors.inc()
            raise
        # Every state is shown, at zero too, so a dashboard's series never vanish.
        self.tasks.replace(({"state": s.value}, float(tasks.get(s, 0))) for s in QUEUE_STATES)
        self.jobs.replace(({"state": s.value}, float(jobs.get(s, 0))) for s in JobState)
        now = time.time()
        self.worker_heartbeat_age.replace(
            [] if newest_beat is None else [({}, max(0.0, now - newest_beat))])
        self.oldest_task_age.set(0.0 if oldest_due is None else max(0.0, now - oldest_due))

    def render(self) -> str:
        for name, value in process_metrics.process_readings().items():
            self.process[name].set(value)
        return self.registry.render()
