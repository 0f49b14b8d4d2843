"""Sinks for the publish handler: one event document, published to one message broker.

Each sink is named by a URL and publishes one message per call over a connection of its own
(opened, used, closed: a broker that restarted between two runs needs no reconnect logic, and
the worker's retries are the reconnect policy). Each library is an optional extra, imported
only when a sink of its kind is built, and each raises :class:`BrokerUnavailableError` (a
``TransientError``: the worker backs off and runs the task again) for anything that a broker
coming back can cure, ``PermanentError`` for a URL that cannot work.

==========  ===============================================  ==================================
scheme      URL                                              message
==========  ===============================================  ==================================
nats        ``nats://host:4222/SUBJECT?stream=NAME``         JetStream publish, header
                                                             ``Nats-Msg-Id`` = event id (the
                                                             server drops a repeat within the
                                                             stream's duplicate window, 2 min
                                                             by default); ``stream`` is created
                                                             for the subject if missing
redis       ``redis://host:6379/0?stream=KEY&maxlen=N``       ``XADD KEY * id ID event JSON``
                                                             (``MAXLEN ~ N`` when given)
amqp        ``amqp://user:pw@host:5672/VHOST?exchange=X``     publisher-confirmed, persistent,
            ``&routing_key=K``                               ``message_id`` = event id,
                                                             ``mandatory`` (an unroutable
                                                             message is an error, retried)
mqtt        ``mqtt://[user:pw@]host:1883/TOPIC``              QoS 1: done once the broker's
                                                             PUBACK arrives
==========  ===============================================  ==================================

Defaults: subject ``pixhook.events``, stream key ``pixhook:events``, exchange ``""`` (the
default exchange) with routing key ``pixhook.events``, topic ``pixhook/events``.
"""

from __future__ import annotations

import abc
import contextlib
import urllib.parse
from typing import Any, Final

from service.handler_api import PermanentError, TransientError

#: The extra to install for each scheme.
EXTRAS: Final = {"nats": "nats", "redis": "redis", "rediss": "redis", "amqp": "rabbitmq",
                 "amqps": "rabbitmq", "mqtt": "mqtt"}
CONTENT_TYPE: Final = "application/cloudevents+json"


class BrokerUnavailableError(TransientError):
    """The broker could not take the message now (down, unreachable, no confirm, no route)."""


class Sink(abc.ABC):
    """Publishes event documents to one broker address."""

    def __init__(self, url: urllib.parse.SplitResult) -> None:
        self.url = url
        self.query = dict(urllib.parse.parse_qsl(url.query))

    @property
    def name(self) -> str:
        """The URL without credentials or query, fit for logs and errors."""
        host = self.url.hostname or ""
        port = f":{self.url.port}" if self.url.port else ""
        return f"{self.url.scheme}://{host}{port}{self.url.path}"

    def path(self, default: str) -> str:
        """The URL's path without its leading ``/`` (a subject, topic or vhost)."""
        return urllib.parse.unquote(self.url.path.lstrip("/")) or default

    @abc.abstractmethod
    async def publish(self, event_id: str, event_type: str, body: bytes) -> None:
        """Publish one event; return once the broker has it (acknowledged where it can)."""


class NatsSink(Sink):
    async def publish(self, event_id: str, event_type: str, body: bytes) -> None:
        import nats
        from nats.js.errors import NotFoundError

        subject = self.path("pixhook.events").replace("/", ".")
        server = self.url._replace(path="", query="").geturl()
        try:
            # max_reconnect_attempts=0 would mean "for ever" in nats-py, even for the first
            # connection; 1 gives up after a second try. Errors are ours to report.
            client = await nats.connect(server, allow_reconnect=False, connect_timeout=5,
                                        max_reconnect_attempts=1, reconnect_time_wait=0.1,
                                        error_cb=_quiet)
        except Exception as exc:  # nats raises its own and OSError variants
            raise BrokerUnavailableError(f"{self.name}: {type(exc).__name__}") from None
        try:
            jetstream = client.jetstream()
            stream = self.query.get("stream")
            if stream:
                try:
                    await jetstream.find_stream_name_by_subject(subject)
                except NotFoundError:
                    await jetstream.add_stream(name=stream, subjects=[subject])
            ack = await jetstream.publish(subject, body, headers={
                "Nats-Msg-Id": event_id, "Content-Type": CONTENT_TYPE, "Ce-Type": event_type})
            del ack  # ``ack.duplicate``: the server had it already, which is success too
        except Exception as exc:
            raise BrokerUnavailableError(f"{self.name}: {type(exc).__name__}: "
                                         f"{str(exc)[:100]}") from None
        finally:
            with contextlib.suppress(Exception):
                await client.close()


async def _quiet(error: Exception) -> None:
    """nats-py's error callback: its default logs each failed attempt with a traceback."""


class RedisSink(Sink):
    async def publish(self, event_id: str, event_type: str, body: bytes) -> None:
        import redis.asyncio
        import redis.exceptions

        key = self.query.get("stream") or "pixhook:events"
        maxlen = self.query.get("maxlen")
        rest = {k: v for k, v in self.query.items() if k not in ("stream", "maxlen")}
        plain = self.url._replace(query=urllib.parse.urlencode(rest)).geturl()
        client: Any = redis.asyncio.from_url(plain, socket_connect_timeout=5)
        try:
            await client.xadd(key, {"id": event_id, "type": event_type, "event": body},
                              maxlen=int(maxlen) if maxlen else None, approximate=True)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                OSError) as exc:
            raise BrokerUnavailableError(f"{self.name}: {type(exc).__name__}") from None
        except redis.exceptions.RedisError as exc:  # a wrong type, a refused command...
            raise BrokerUnavailableError(f"{self.name}: {exc}") from None
        finally:
            with contextlib.suppress(Exception):
                await client.aclose()


class AmqpSink(Sink):
    async def publish(self, event_id: str, event_type: str, body: bytes) -> None:
        import aio_pika

        exchange_name = self.query.get("exchange", "")
        routing_key = self.query.get("routing_key", "pixhook.events")
        server = self.url._replace(query="").geturl()
        try:
            connection = await aio_pika.connect(server, timeout=5)
        except Exception as exc:
            raise BrokerUnavailableError(f"{self.name}: {type(exc).__name__}") from None
        try:
            async with connection:
                channel = await connection.channel(publisher_confirms=True)
                exchange = (await channel.declare_exchange(
                    exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
                    if exchange_name else channel.default_exchange)
                message = aio_pika.Message(
                    body, message_id=event_id, type=event_type, content_type=CONTENT_TYPE,
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
                # mandatory: a message no queue takes comes back as an error, not a silent loss
                await exchange.publish(message, routing_key=routing_key, mandatory=True)
        except Exception as exc:
            raise BrokerUnavailableError(f"{self.name}: {type(exc).__name__}: "
                                         f"{str(exc)[:100]}") from None


class MqttSink(Sink):
    async def publish(self, event_id: str, event_type: str, body: bytes) -> None:
        import aiomqtt

        topic = self.path("pixhook/events")
        try:
            async with aiomqtt.Client(self.url.hostname or "127.0.0.1", self.url.port or 1883,
                                      username=self.url.username, password=self.url.password,
                                      timeout=5) as client:
                await client.publish(topic, body, qos=1, timeout=5)
        except aiomqtt.MqttError as exc:
            raise BrokerUnavailableError(f"{self.name}: {exc}") from None


SINKS: Final[dict[str, type[Sink]]] = {"nats": NatsSink, "redis": RedisSink,
                                       "rediss": RedisSink, "amqp": AmqpSink,
                                       "amqps": AmqpSink, "mqtt": MqttSink}


def sink_for(url: str) -> Sink:
    """The sink a URL names; ``PermanentError`` for an unknown scheme or a missing extra."""
    parts = urllib.parse.urlsplit(url)
    kind = SINKS.get(parts.scheme)
    if kind is None:
        raise PermanentError(f"[handler.publish] sinks: unknown scheme {parts.scheme!r} "
                             f"(one of {', '.join(sorted(SINKS))})")
    module = {"nats": "nats", "redis": "redis", "rediss": "redis", "amqp": "aio_pika",
              "amqps": "aio_pika", "mqtt": "aiomqtt"}[parts.scheme]
    try:
        __import__(module)
    except ImportError:
        raise PermanentError(f"a {parts.scheme} sink needs pip install "
                             f"'pixhook[{EXTRAS[parts.scheme]}]'") from None
    return kind(parts)
