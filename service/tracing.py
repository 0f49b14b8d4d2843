"""Optional OpenTelemetry tracing: one trace per job, from its submission to its last handler.

With the ``otel`` extra installed (``pip install 'pixhook[otel]'``) pixhook records spans for:

* ``pixverse.submit``: the create call to PixVerse (attempt, endpoint, the video id it got);
* ``pixverse.webhook``: a webhook for a job, from the first byte read to the commit, with a
  child ``pixhook.transition``: the store write that applied (or ignored) it and queued its
  tasks; ``pixverse.poll`` is the same record for a status the reconciler fetched;
* ``pixhook.handler``: each handler run (handler, task id, attempt, outcome).

Every span of a job is in **one trace whose id is the job's ``Ai-trace-id``** (a UUID, used
as the 128-bit trace id; any other string is hashed to one), and carries ``pixhook.job_id``.
So the trace id shown by ``/api`` and in PixVerse's own support requests finds the whole story
in Jaeger or Tempo, although it crosses processes (web, worker) that never call each other.

Spans go to the process's global tracer provider. ``pixhook serve``, ``web`` and ``worker``
set one up when ``OTEL_TRACES_EXPORTER`` (``otlp`` or ``console``) or
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set and nothing else has (``opentelemetry-instrument``
may have); the SDK reads the rest of its ``OTEL_*`` variables itself. Without the extra, or
with no provider, every call here is a no-op costing a function call.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer, TracerProvider

    from service.store import TransitionResult

try:
    from opentelemetry import trace
except ImportError:  # the otel extra is not installed: tracing is off
    trace = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

TRACER_NAME: Final = "pixhook"
Attributes = Mapping[str, str | int | float | bool]

_provider: TracerProvider | None = None  # set by use(); else the global one


def available() -> bool:
    """Whether the OpenTelemetry API is installed."""
    return trace is not None


def use(provider: TracerProvider | None) -> None:
    """Send spans to ``provider`` instead of the global one (``None``: the global one again).
    For tests and embedding; the global provider can be set only once per process."""
    global _provider
    _provider = provider


def _tracer() -> Tracer | None:
    """The tracer, or ``None`` when no provider would record anything."""
    if trace is None:
        return None
    provider = _provider or trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None  # nobody configured tracing: skip building spans at all
    return provider.get_tracer(TRACER_NAME)


def trace_id_of(ai_trace_id: str) -> int:
    """The OpenTelemetry trace id of a job: its ``Ai-trace-id`` as a 128-bit number."""
    try:
        value = uuid.UUID(ai_trace_id).int
    except ValueError:
        value = int.from_bytes(hashlib.sha256(ai_trace_id.encode()).digest()[:16], "big")
    return value or 1  # 0 is the invalid trace id


def _job_context(ai_trace_id: str) -> Any:
    """A context whose (remote) parent puts new spans in the job's trace."""
    assert trace is not None
    parent = trace.SpanContext(
        trace_id=trace_id_of(ai_trace_id),
        # A stand-in parent span id, stable per job: spans of one job are siblings.
        span_id=int.from_bytes(hashlib.sha256(ai_trace_id.encode()).digest()[16:24], "big") or 1,
        is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED))
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


@contextlib.contextmanager
def span(name: str, *, ai_trace_id: str, attributes: Attributes) -> Iterator[Span | None]:
    """A span around the block, in the job's trace and current inside it (so an instrumented
    HTTP client's spans nest under it). An exception leaving the block is recorded on it and
    sets its status to error, then goes on. Yields ``None`` when tracing is off."""
    tracer = _tracer()
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, context=_job_context(ai_trace_id),
                                      attributes=dict(attributes)) as current:
        yield current


def record(name: str, *, ai_trace_id: str, start_ns: int, end_ns: int, attributes: Attributes,
           children: tuple[tuple[str, int, int, Attributes], ...] = ()) -> None:
    """A span already over (``start_ns`` to ``end_ns``, ``time.time_ns()`` values) in the job's
    trace, with ``children`` (``(name, start_ns, end_ns, attributes)``) under it: for work
    whose job is known only once it is done, as a webhook's."""
    tracer = _tracer()
    if tracer is not None:
        _record(tracer, name, ai_trace_id=ai_trace_id, start_ns=start_ns, end_ns=end_ns,
                attributes=attributes, children=children)


def _record(tracer: Tracer, name: str, *, ai_trace_id: str, start_ns: int, end_ns: int,
            attributes: Attributes, children: tuple[tuple[str, int, int, Attributes], ...]
            ) -> None:
    """``record`` with the tracer already in hand (callers that checked it reuse it)."""
    parent = tracer.start_span(name, context=_job_context(ai_trace_id),
                               attributes=dict(attributes), start_time=start_ns)
    inner = trace.set_span_in_context(parent)
    for child_name, child_start, child_end, child_attributes in children:
        tracer.start_span(child_name, context=inner, attributes=dict(child_attributes),
                          start_time=child_start).end(end_time=child_end)
    parent.end(end_time=end_ns)


def record_transition(name: str, result: TransitionResult, *, video_id: int, started_ns: int,
                      write_started_ns: int) -> None:
    """A webhook (``pixverse.webhook``) or a reconciler's poll (``pixverse.poll``) that
    reached a job, with its transition's store write as a ``pixhook.transition`` child."""
    tracer = _tracer()
    if tracer is None:
        return
    job, transition, ended_ns = result.job, result.transition, time.time_ns()
    outcome = result.outcome.value
    _record(tracer, name, ai_trace_id=job.trace_id, start_ns=started_ns, end_ns=ended_ns,
            attributes={"pixhook.job_id": job.id, "pixverse.video_id": str(video_id),
                        "pixhook.outcome": outcome},
            children=(("pixhook.transition", write_started_ns, ended_ns, {
                "pixhook.job_id": job.id, "pixhook.outcome": outcome,
                "pixhook.from_state": transition.from_state.value if transition.from_state
                else "",
                "pixhook.to_state": transition.to_state.value,
                "pixhook.source": transition.source.value,
                "pixhook.tasks": len(result.tasks)}),))


def configure(environ: Mapping[str, str] = os.environ) -> bool:
    """Set up the SDK from ``OTEL_*`` variables if asked to and nothing else has; whether a
    provider was installed. Called once by the process commands."""
    exporter_name = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not exporter_name and environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        exporter_name = "otlp"
    if not exporter_name or exporter_name == "none":
        return False
    if trace is None:
        logger.warning("OTEL_TRACES_EXPORTER is set but OpenTelemetry is not installed "
                       "(pip install 'pixhook[otel]'); no traces are sent",
                       extra={"action": "tracing"})
        return False
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return False  # opentelemetry-instrument (or the embedding app) set one up already
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SpanExporter,
        )
    except ImportError:
        logger.warning("OTEL_TRACES_EXPORTER is set but opentelemetry-sdk is not installed "
                       "(pip install 'pixhook[otel]'); no traces are sent",
                       extra={"action": "tracing"})
        return False
    exporter: SpanExporter
    if exporter_name == "console":
        exporter = ConsoleSpanExporter()
    elif exporter_name == "otlp":
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError:
            logger.warning("OTLP export needs opentelemetry-exporter-otlp-proto-http "
                           "(pip install 'pixhook[otel]'); no traces are sent",
                           extra={"action": "tracing"})
            return False
        exporter = OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
    else:
        logger.warning("OTEL_TRACES_EXPORTER=%s is not one pixhook sets up (otlp, console); "
                       "no traces are sent", exporter_name, extra={"action": "tracing"})
        return False
    # Resource.create() reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES.
    service_name = environ.get("OTEL_SERVICE_NAME") or "pixhook"
    provider = SDKTracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    logger.info("tracing: spans go to the %s exporter as service %s", exporter_name,
                service_name, extra={"action": "tracing"})
    return True


__all__ = ["available", "configure", "record", "record_transition", "span", "trace_id_of",
           "use"]
