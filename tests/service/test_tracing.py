"""OpenTelemetry tracing (``service/tracing.py``): one trace per job, its id the job's
``Ai-trace-id``, with spans for the submit call, each webhook (or poll) and its transition, and
each handler run. Recorded by the SDK's in-memory exporter from a real service and simulator
over loopback."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from service import tracing
from service.handler_api import BaseHandler, HandlerContext, PermanentError
from service.lifecycle import JobState
from service.registry import HandlerSet
from service.store import Job, Transition
from tests.service.conftest import Stack


class Delivered(BaseHandler):
    name = "delivered"
    events = frozenset({JobState.SUCCEEDED})

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        pass


class Refused(BaseHandler):
    name = "refused"
    events = frozenset({JobState.SUCCEEDED})

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        raise PermanentError("the chat server said no")


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use(provider)
    try:
        yield exporter
    finally:
        tracing.use(None)
        provider.shutdown()


def _of_job(exporter: InMemorySpanExporter, job_id: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans()
            if (span.attributes or {}).get("pixhook.job_id") == job_id]


def _named(found: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in found if span.name == name]


def _handlers(stack: Stack) -> HandlerSet:
    settings = dataclasses.replace(stack.settings, handlers=("delivered", "refused"))
    return HandlerSet.from_settings(settings, available={"delivered": Delivered,
                                                         "refused": Refused})


async def test_a_job_is_one_trace_from_submit_to_its_handlers(
        stack: Stack, spans: InMemorySpanExporter) -> None:
    async with stack.service(handlers=_handlers(stack)):
        created = await stack.submit()
        job = await stack.wait_for(created["id"], "succeeded")
        await stack.wait_for_tasks(job["id"], "succeeded", "dead")
    found = _of_job(spans, job["id"])
    trace_id = uuid.UUID(job["trace_id"]).int
    assert found and {span.context.trace_id for span in found} == {trace_id}

    [submit] = _named(found, "pixverse.submit")
    assert submit.attributes is not None
    assert submit.attributes["pixverse.video_id"] == str(job["video_id"])
    assert submit.attributes["pixhook.kind"] == "text_to_video"
    assert submit.status.status_code != StatusCode.ERROR

    webhooks = _named(found, "pixverse.webhook")
    writes = {span.parent.span_id: span for span in _named(found, "pixhook.transition")
              if span.parent is not None}
    assert webhooks, [span.name for span in found]
    for webhook in webhooks:  # each webhook's transition write is its child, inside it
        write = writes[webhook.context.span_id]
        assert webhook.start_time is not None and write.start_time is not None
        assert webhook.start_time <= write.start_time <= write.end_time  # type: ignore[operator]
        assert write.end_time == webhook.end_time
    succeeded = [writes[w.context.span_id] for w in webhooks
                 if (writes[w.context.span_id].attributes or {}).get("pixhook.to_state")
                 == "succeeded"]
    assert [(s.attributes or {}).get("pixhook.tasks") for s in succeeded] == [2]

    runs = {(span.attributes or {})["pixhook.handler"]: span
            for span in _named(found, "pixhook.handler")}
    assert set(runs) == {"delivered", "refused"}
    assert runs["delivered"].status.status_code != StatusCode.ERROR
    assert runs["refused"].status.status_code == StatusCode.ERROR
    assert any(event.name == "exception" for event in runs["refused"].events)


async def test_a_poll_that_heals_a_dropped_webhook_is_in_the_trace(
        stack: Stack, spans: InMemorySpanExporter) -> None:
    await stack.set_chaos(webhook_drop_rate=1.0)
    async with stack.service():
        created = await stack.submit()
        job = await stack.wait_for(created["id"], "succeeded", timeout=20)
    found = _of_job(spans, job["id"])
    assert not _named(found, "pixverse.webhook")
    polls = _named(found, "pixverse.poll")
    assert polls and {span.context.trace_id for span in polls} == {
        uuid.UUID(job["trace_id"]).int}
    outcomes = [(span.attributes or {}).get("pixhook.outcome") for span in polls]
    assert outcomes[-1] == "applied"


def test_without_a_provider_no_span_is_built() -> None:
    """The default: no provider set up (this suite never sets the global one), so a span
    is not even built."""
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)
    with tracing.span("pixhook.handler", ai_trace_id="order-1", attributes={}) as span:
        assert span is None


def test_a_trace_id_that_is_not_a_uuid_is_hashed_to_a_stable_one() -> None:
    given = "order-1234"  # a submitter's own Ai-trace-id
    assert tracing.trace_id_of(given) == tracing.trace_id_of(given) != 0
    assert tracing.trace_id_of(given) < 2**128
    assert tracing.trace_id_of(str(uuid.UUID(int=5))) == 5


def _configure_in_a_fresh_process(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    code = ("from service import tracing\n"
            "print('configured', tracing.configure())\n"
            "with tracing.span('pixhook.handler', ai_trace_id='order-1',"
            " attributes={'pixhook.job_id': 'job_1'}): pass\n")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60, check=True)


@pytest.mark.parametrize(("env", "configured"), [
    ({"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "pixhook-test"}, True),
    ({}, False),
    ({"OTEL_TRACES_EXPORTER": "none"}, False),
])
def test_the_process_commands_set_up_the_sdk_from_otel_variables(
        env: dict[str, str], configured: bool) -> None:
    base: dict[str, Any] = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = _configure_in_a_fresh_process({**base, **env})
    assert f"configured {configured}" in result.stdout
    # The console exporter prints the span when the process exits (the SDK flushes at exit).
    assert ('"name": "pixhook.handler"' in result.stdout) is configured
    if configured:
        assert "pixhook-test" in result.stdout
        assert hex(tracing.trace_id_of("order-1"))[2:].rjust(32, "0") in result.stdout
