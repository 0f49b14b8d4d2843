"""The publish handler against the real brokers on this machine (../shared/services.md):
NATS JetStream, Redis Streams, RabbitMQ and Mosquitto (MQTT).

Each broker is reached through a TCP proxy on loopback (:mod:`tests.support.tcp_proxy`), so a
test can make it go away mid-stream without stopping the shared server. What the broker got is
read straight from it, not through the proxy. Addresses come from ``PIXHOOK_TEST_NATS_URL``,
``PIXHOOK_TEST_REDIS_URL``, ``PIXHOOK_TEST_AMQP_URL`` and ``PIXHOOK_TEST_MQTT_URL`` (defaults:
127.0.0.1 and the standard ports). A broker that does not answer is skipped, except under
``PIXHOOK_REQUIRE_BROKERS=1`` (``.ci/run``), where that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import urllib.parse
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from handlers.brokers import BrokerUnavailableError
from handlers.publish import PublishHandler
from service.handler_api import PermanentError, TransientError
from service.lifecycle import JobState
from tests.handlers.conftest import Harness
from tests.support.tcp_proxy import TcpProxy, tcp_proxy

DEFAULTS = {"nats": "nats://127.0.0.1:4222", "redis": "redis://127.0.0.1:6379/0",
            "amqp": "amqp://guest:guest@127.0.0.1:5672/", "mqtt": "mqtt://127.0.0.1:1883"}


def _server(kind: str) -> urllib.parse.SplitResult:
    url = urllib.parse.urlsplit(os.environ.get(f"PIXHOOK_TEST_{kind.upper()}_URL",
                                               DEFAULTS[kind]))
    try:
        socket.create_connection((url.hostname, url.port), timeout=2).close()
    except OSError as exc:
        reason = f"no {kind} server at {url.hostname}:{url.port} ({exc})"
        if os.environ.get("PIXHOOK_REQUIRE_BROKERS") == "1":
            pytest.fail(reason + "; PIXHOOK_REQUIRE_BROKERS=1")
        pytest.skip(reason)
    return url


def _via(url: urllib.parse.SplitResult, port: int, path: str, query: str = "") -> str:
    """``url`` pointed at the proxy's port, with ``path`` and ``query``."""
    auth = f"{url.username}:{url.password}@" if url.username else ""
    return urllib.parse.urlunsplit((url.scheme, f"{auth}127.0.0.1:{port}", path, query, ""))


class Broker:
    """One broker's side of a test: where to publish, and what arrived."""

    def __init__(self, kind: str, url: urllib.parse.SplitResult) -> None:
        self.kind, self.server = kind, url
        self.ns = f"t{uuid.uuid4().hex[:12]}"

    def sink(self, proxy: TcpProxy) -> str:
        port = proxy.port
        return {
            "nats": lambda: _via(self.server, port, f"/pixhook.{self.ns}",
                                 f"stream={self.ns.upper()}"),
            "redis": lambda: _via(self.server, port, self.server.path,
                                  f"stream=pixhook:{self.ns}"),
            "amqp": lambda: _via(self.server, port, self.server.path or "/",
                                 f"exchange=pixhook.{self.ns}&routing_key=job.events"),
            "mqtt": lambda: _via(self.server, port, f"/pixhook/{self.ns}"),
        }[self.kind]()

    async def __aenter__(self) -> Broker:
        self._stack = contextlib.AsyncExitStack()
        self._mqtt: list[bytes] = []
        if self.kind == "amqp":
            import aio_pika
            connection = await aio_pika.connect(self.server.geturl())
            self._stack.push_async_callback(connection.close)
            channel = await connection.channel()
            exchange = await channel.declare_exchange(f"pixhook.{self.ns}",
                                                      aio_pika.ExchangeType.TOPIC, durable=True)
            self._queue = await channel.declare_queue(self.ns, auto_delete=False)
            await self._queue.bind(exchange, "job.events")
            self._stack.push_async_callback(exchange.delete)
            self._stack.push_async_callback(self._queue.delete)
        elif self.kind == "mqtt":
            import aiomqtt
            client = aiomqtt.Client(self.server.hostname or "", self.server.port or 1883)
            await self._stack.enter_async_context(client)
            await client.subscribe(f"pixhook/{self.ns}", qos=1)

            async def collect() -> None:
                async for message in client.messages:
                    self._mqtt.append(bytes(message.payload))  # type: ignore[arg-type]

            task = asyncio.create_task(collect())
            self._stack.callback(task.cancel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.kind == "nats":
            import nats
            client = await nats.connect(self.server.geturl())
            with contextlib.suppress(Exception):
                await client.jetstream().delete_stream(self.ns.upper())
            await client.close()
        elif self.kind == "redis":
            import redis.asyncio
            client: Any = redis.asyncio.from_url(self.server.geturl())
            await client.delete(f"pixhook:{self.ns}")
            await client.aclose()
        await self._stack.aclose()

    async def received(self) -> list[tuple[str, dict[str, Any]]]:
        """``(message id as the broker saw it, event document)`` for every message."""
        if self.kind == "nats":
            import nats
            client = await nats.connect(self.server.geturl())
            jetstream = client.jetstream()
            info = await jetstream.stream_info(self.ns.upper())
            found = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                msg = await jetstream.get_msg(self.ns.upper(), seq)
                found.append(((msg.headers or {})["Nats-Msg-Id"], json.loads(msg.data or b"")))
            await client.close()
            return found
        if self.kind == "redis":
            import redis.asyncio
            client: Any = redis.asyncio.from_url(self.server.geturl())
            entries = await client.xrange(f"pixhook:{self.ns}")
            await client.aclose()
            return [(fields[b"id"].decode(), json.loads(fields[b"event"]))
                    for _, fields in entries]
        if self.kind == "amqp":
            found = []
            while (message := await self._queue.get(no_ack=True, fail=False)) is not None:
                found.append((message.message_id or "", json.loads(message.body)))
            return found
        await asyncio.sleep(0.3)  # MQTT: let the subscription catch up
        return [(json.loads(body)["id"], json.loads(body)) for body in self._mqtt]


@pytest.fixture(params=sorted(DEFAULTS))
async def broker(request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    async with Broker(request.param, _server(request.param)) as broker:
        yield broker


async def _publish_until_done(handler: PublishHandler, harness: Harness, job: Any,
                              transition: Any, task: Any, proxy: TcpProxy,
                              restore_after: int) -> list[BaseException]:
    """Run the task the way the worker does (again after each ``TransientError``),
    restoring the proxy after ``restore_after`` failed runs; return the failures."""
    failures: list[BaseException] = []
    while True:
        try:
            await handler.run(job, transition, harness.context(task))
            return failures
        except TransientError as exc:
            failures.append(exc)
            if len(failures) == restore_after:
                await proxy.restore()
            assert len(failures) < 10, "the task never got through"


async def test_nothing_is_lost_when_the_broker_goes_away_mid_stream(
        harness: Harness, broker: Broker) -> None:
    async with tcp_proxy(broker.server.hostname or "", broker.server.port or 0) as proxy:
        handler = PublishHandler(harness.settings, {"sinks": [broker.sink(proxy)]})
        runs = [await harness.transition("publish", state)
                for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.SUCCEEDED,
                              JobState.SUCCEEDED, JobState.FAILED)]
        sent = []
        for number, (job, transition, task) in enumerate(runs):
            assert handler.wants(job, transition)
            if number == 2:
                await proxy.cut()  # the broker goes away between two events
            failures = await _publish_until_done(handler, harness, job, transition, task,
                                                 proxy, restore_after=2)
            assert all(isinstance(f, BrokerUnavailableError) for f in failures)
            assert len(failures) == (2 if number == 2 else 0)
            sent.append(f"transition:{transition.id}")
        # A worker that died after publishing runs the task again: the same event again.
        job, transition, task = runs[0]
        await handler.run(job, transition, harness.context(task))

    received = await broker.received()
    ids = [message_id for message_id, _ in received]
    assert set(ids) == set(sent)                              # nothing lost
    assert all(message_id == doc["id"] for message_id, doc in received)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for message_id, doc in received:
        by_id.setdefault(message_id, []).append(doc)
    assert all(docs.count(docs[0]) == len(docs) for docs in by_id.values())  # same event
    if broker.kind == "nats":
        assert sorted(ids) == sorted(sent)  # JetStream dropped the repeat by Nats-Msg-Id
    else:
        assert ids.count(sent[0]) == 2 and len(ids) == len(sent) + 1
    job, transition, _ = runs[1]
    [doc] = by_id[sent[1]]
    assert doc["specversion"] == "1.0" and doc["dataversion"] == 1
    assert doc["type"] == "io.pixhook.job.transition" and doc["subject"] == job.id
    assert doc["data"]["transition"]["to_state"] == "failed"


async def test_a_cut_connection_during_a_publish_is_retried(harness: Harness,
                                                            broker: Broker) -> None:
    async with tcp_proxy(broker.server.hostname or "", broker.server.port or 0) as proxy:
        handler = PublishHandler(harness.settings, {"sinks": broker.sink(proxy)})
        job, transition, task = await harness.transition("publish")
        # The connection is cut while the run is talking to the broker.
        run = asyncio.create_task(handler.run(job, transition, harness.context(task)))
        await asyncio.sleep(0.005)
        await proxy.cut()
        with contextlib.suppress(BrokerUnavailableError):
            await run  # it may have finished first: then the retry below is a duplicate
        await proxy.restore()
        await handler.run(job, transition, harness.context(task))
    received = await broker.received()
    assert {message_id for message_id, _ in received} == {f"transition:{transition.id}"}


async def test_unknown_schemes_and_no_sinks() -> None:
    from handlers.brokers import sink_for
    with pytest.raises(PermanentError, match="unknown scheme 'kafka'"):
        sink_for("kafka://127.0.0.1:9092/x")
    assert sink_for("redis://127.0.0.1:6379/0").name == "redis://127.0.0.1:6379/0"
