"""Publishing job events to message brokers: NATS JetStream, Redis Streams, RabbitMQ, MQTT.

Every transition the handler is configured for becomes one event document, the same versioned,
CloudEvents-shaped JSON the event stream carries (:mod:`service.events`: ``specversion``,
``dataversion``, ``id``, ``source``, ``type``, ``subject``, ``time``, ``data``), published to
every sink in the ``sinks`` option (URLs; :mod:`handlers.brokers` lists the schemes)::

    [handler.publish]
    sinks = ["nats://127.0.0.1:4222/pixhook.events?stream=PIXHOOK",
             "redis://127.0.0.1:6379/0?stream=pixhook:events",
             "amqp://guest:guest@127.0.0.1:5672/?exchange=pixhook&routing_key=job.events",
             "mqtt://127.0.0.1:1883/pixhook/events"]

**Delivery.** At least once, and a repeat is recognisable: the event ``id`` names the
transition (``transition:<id>``), so every run of the task, and every retry after a broker
went away, publishes the same id (NATS's ``Nats-Msg-Id`` and RabbitMQ's ``message_id`` carry
it; the server deduplicates on the former). A run succeeds only once every sink has
acknowledged; if one is down the run raises a ``TransientError`` and the worker runs it again
with backoff until it is back (up to ``PIXHOOK_TASK_MAX_ATTEMPTS``), publishing again to all of
them, the ones that had it included. The whole run is bounded by ``PIXHOOK_OUTBOUND_TIMEOUT``.

Each broker's library is an optional extra (``pixhook[nats]``, ``[redis]``, ``[rabbitmq]``,
``[mqtt]``); a sink whose extra is missing ends the run with a ``PermanentError`` naming it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, ClassVar

from service.handler_api import (
    BaseHandler,
    HandlerContext,
    Job,
    JobState,
    PermanentError,
    TransientError,
    Transition,
    event_document,
    transition_event,
)

from . import brokers


class PublishHandler(BaseHandler):
    """Publishes an event for each transition to every configured broker."""

    name: ClassVar[str] = "publish"
    #: Every state: a broker's consumers decide what they care about.
    events: ClassVar[frozenset[JobState]] = frozenset(JobState)

    def wants(self, job: Job, transition: Transition) -> bool:
        return bool(sink_urls(self.options))

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        urls = sink_urls({**self.options, **context.options})
        if not urls:
            raise PermanentError("no sinks configured ([handler.publish] sinks)")
        sinks = [brokers.sink_for(url) for url in urls]
        event = transition_event(job, transition)
        body = json.dumps(event_document(event), separators=(",", ":")).encode()
        deadline = context.settings.outbound_timeout
        try:
            async with asyncio.timeout(deadline or None):
                outcomes = await asyncio.gather(
                    *(sink.publish(event.id, str(event.type), body) for sink in sinks),
                    return_exceptions=True)
        except TimeoutError:
            raise brokers.BrokerUnavailableError(
                f"the brokers did not all acknowledge within {deadline:g} s "
                "(PIXHOOK_OUTBOUND_TIMEOUT)") from None
        failed = [(sink, outcome) for sink, outcome in zip(sinks, outcomes, strict=True)
                  if isinstance(outcome, BaseException)]
        for _, error in failed:
            if not isinstance(error, Exception):
                raise error  # cancellation and the like are not a sink's answer
        if failed:
            permanent = [e for _, e in failed if isinstance(e, PermanentError)]
            if permanent:
                raise permanent[0]
            detail = "; ".join(str(error) for _, error in failed)
            if all(isinstance(e, TransientError) for _, e in failed):
                raise brokers.BrokerUnavailableError(
                    f"{len(failed)} of {len(sinks)} sink(s) failed: {detail}")
            raise TransientError(f"{len(failed)} of {len(sinks)} sink(s) failed: {detail}")
        context.logger.info("job %s: event %s published to %d sink(s)", job.id, event.id,
                            len(sinks))


def sink_urls(options: Mapping[str, Any]) -> list[str]:
    """The ``sinks`` option as a list (a list, or one string of URLs split at spaces)."""
    value = options.get("sinks") or ""
    items = value if isinstance(value, list | tuple) else str(value).split()
    return [str(item).strip() for item in items if str(item).strip()]
