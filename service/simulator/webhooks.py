"""The simulator's webhook delivery engine (REFERENCE.md sections 7.1 and 7.5).

When a simulated job finishes, the API calls :meth:`WebhookDispatcher.publish`. That records a
delivery and queues it; nothing blocks. One scheduler task keeps every pending delivery in a heap
ordered by due time and hands due ones to a bounded pool of senders
(``SimulatorConfig.webhook_max_concurrency``), so thousands of pending retries cost one heap entry
each rather than one sleeping task each.

Each attempt POSTs the same compact JSON body with fresh ``Webhook-Timestamp`` / ``Webhook-Nonce``
headers, a ``Webhook-Signature`` from :mod:`service.pixverse.signature` and the job's
``Ai-Trace-Id``. Only HTTP 200 with body ``ok`` counts as delivered. A failed attempt is retried
after ``webhook_retry_schedule[i] * time_compression`` seconds with ``±webhook_jitter`` jitter;
after the last retry the delivery is ``failed``.

Chaos knobs (``config.chaos``, read at publish or attempt time so ``PUT /_sim/chaos`` takes
effect at once) drop, duplicate, delay, reorder, or corrupt the signature of deliveries. All
randomness, jitter included, comes from one :class:`random.Random` seeded with
``config.chaos.seed``; a new seed set at runtime reseeds it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import heapq
import itertools
import json
import logging
import os
import random
import time
import uuid
from typing import Any, Final, Literal

import httpx

from service.pixverse import signature
from service.simulator.config import SimulatorConfig

logger = logging.getLogger(__name__)

DeliveryState = Literal["pending", "delivered", "failed", "dropped", "no_url"]

#: How much of a receiver's answer a delivery record keeps.
RESPONSE_BODY_LIMIT: Final = 200


@dataclasses.dataclass(eq=False)
class _Delivery:
    """One logical webhook event on its way to one URL (all of its attempts)."""

    delivery_id: str
    video_id: str
    status: Any
    trace_id: str
    url: str | None
    body: bytes
    #: Kept only to sign attempts; ``record()`` leaves it out and ``repr`` hides it.
    secret: str = dataclasses.field(repr=False)
    created_at: float
    state: DeliveryState = "pending"
    duplicate_of: str | None = None
    attempts: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    next_attempt_at: float | None = None

    def record(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "video_id": self.video_id,
            "status": self.status,
            "trace_id": self.trace_id,
            "url": self.url,
            "state": self.state,
            "duplicate_of": self.duplicate_of,
            "created_at": self.created_at,
            "attempts": [dict(attempt) for attempt in self.attempts],
            "next_attempt_at": self.next_attempt_at,
        }


class _Dice:
    """The one seeded random source; reseeds when ``config.chaos.seed`` is changed at runtime."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._config = config
        self._seed = config.chaos.seed
        self._rng = random.Random(self._seed)

    @property
    def rng(self) -> random.Random:
        seed = self._config.chaos.seed
        if seed != self._seed:
            self._seed = seed
            self._rng = random.Random(seed)
        return self._rng

    def chance(self, rate: float) -> bool:
        # No draw for a disabled knob, so switching one knob on leaves the others' sequences alone.
        return rate > 0 and self.rng.random() < rate


class WebhookDispatcher:
    """Delivers PixVerse-style webhooks with retries and optional chaos.

    Usage (in the app lifespan)::

        dispatcher = WebhookDispatcher(config)
        await dispatcher.start()
        dispatcher.publish(api_key="sim-key", payload={"id": "1", "status": 1, ...},
                           trace_id="...")
        ...
        await dispatcher.stop()

    :param config: read live: accounts at publish time, chaos and retry settings per attempt.
    :param transport: optional httpx transport, for tests that do not want a real socket.
    """

    def __init__(
        self, config: SimulatorConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self._config = config
        self._transport = transport
        self._dice = _Dice(config)
        self._deliveries: dict[str, _Delivery] = {}
        #: (due on the monotonic clock, tie-breaker, delivery); the tie-breaker keeps FIFO order.
        self._heap: list[tuple[float, int, _Delivery]] = []
        self._sequence = itertools.count()
        #: Deliveries waiting for their reorder batch: (held since, delivery), oldest first.
        self._held: list[tuple[float, _Delivery]] = []
        self._pending = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._wake = asyncio.Event()
        self._client: httpx.AsyncClient | None = None
        self._slots: asyncio.Semaphore | None = None
        self._runner: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Open the HTTP client and start the scheduler. Deliveries published earlier go out now."""
        if self._runner is not None:
            return
        concurrency = max(1, self._config.webhook_max_concurrency)
        self._slots = asyncio.Semaphore(concurrency)
        self._client = httpx.AsyncClient(
            transport=self._transport,
            follow_redirects=False,
            timeout=self._config.webhook_timeout_seconds,
            limits=httpx.Limits(max_connections=concurrency),
        )
        self._runner = asyncio.create_task(self._run(), name="webhook-scheduler")

    async def stop(self) -> None:
        """Cancel the scheduler and in-flight sends, then close the client.

        Unsent deliveries stay ``pending`` in :meth:`deliveries`; the simulator keeps no state
        across restarts, so there is nothing to persist.
        """
        tasks = [*self._in_flight] + ([self._runner] if self._runner else [])
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._runner = None
        self._in_flight.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def publish(self, *, api_key: str, payload: dict[str, Any], trace_id: str,
                url: str | None = None) -> None:
        """Queue the webhook for ``payload`` to ``api_key``'s account (or to ``url``, a job's
        own, when given); returns at once. It is signed with the account's secret.

        Raises :class:`~service.pixverse.errors.MalformedPayloadError` if the payload is not
        flat, since PixVerse signatures cannot cover it.
        """
        signature.canonical_query(payload)  # refuse unsignable payloads here, not in a retry
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        account = self._config.accounts.get(api_key)
        url = url or (account.webhook_url if account else None)
        secret = account.webhook_secret if account else ""
        delivery = self._new_delivery(payload, body, trace_id, url, secret, duplicate_of=None)
        if not url:
            delivery.state = "no_url"
            return
        chaos = self._config.chaos
        if self._dice.chance(chaos.webhook_drop_rate):
            delivery.state = "dropped"
            logger.info("webhook dropped by chaos", extra=self._log(delivery, "webhook_drop"))
            return
        self._enqueue_first(delivery)
        # The copy is a second, independent delivery (own nonces, own retries), as an
        # at-least-once sender produces; it is not itself dropped or duplicated again.
        if self._dice.chance(chaos.webhook_duplicate_rate):
            copy = self._new_delivery(
                payload, body, trace_id, url, secret, duplicate_of=delivery.delivery_id
            )
            logger.info("webhook duplicated by chaos", extra=self._log(copy, "webhook_duplicate"))
            self._enqueue_first(copy)

    def deliveries(self, video_id: str | None = None) -> list[dict[str, Any]]:
        """JSON-able delivery records in publish order, optionally for one video id."""
        return [
            delivery.record()
            for delivery in self._deliveries.values()
            if video_id is None or delivery.video_id == str(video_id)
        ]

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no delivery is pending or scheduled; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # -- queueing ---------------------------------------------------------------------------

    def _new_delivery(
        self,
        payload: dict[str, Any],
        body: bytes,
        trace_id: str,
        url: str | None,
        secret: str,
        *,
        duplicate_of: str | None,
    ) -> _Delivery:
        delivery = _Delivery(
            delivery_id=uuid.uuid4().hex,
            video_id=str(payload.get("id", "")),
            status=payload.get("status"),
            trace_id=trace_id,
            url=url,
            body=body,
            secret=secret,
            created_at=time.time(),
            duplicate_of=duplicate_of,
        )
        self._deliveries[delivery.delivery_id] = delivery
        return delivery

    def _enqueue_first(self, delivery: _Delivery) -> None:
        self._pending += 1
        self._idle.clear()
        if self._config.chaos.webhook_reorder_window > 1:
            self._held.append((time.monotonic(), delivery))
            self._release_held(force=False)
            self._wake.set()
        else:
            self._schedule(delivery, self._chaos_delay())

    def _chaos_delay(self) -> float:
        limit = self._config.chaos.webhook_delay_max_seconds
        return self._dice.rng.uniform(0.0, limit) if limit > 0 else 0.0

    def _release_held(self, *, force: bool) -> None:
        """Release full reorder batches, shuffled; with ``force``, whatever is held."""
        window = self._config.chaos.webhook_reorder_window
        while self._held and (force or window <= 1 or len(self._held) >= window):
            size = len(self._held) if force or window <= 1 else window
            batch = [delivery for _, delivery in self._held[:size]]
            del self._held[:size]
            self._dice.rng.shuffle(batch)
            for delivery in batch:
                self._schedule(delivery, self._chaos_delay())

    def _schedule(self, delivery: _Delivery, delay: float) -> None:
        delay = max(0.0, delay)
        delivery.next_attempt_at = time.time() + delay
        heapq.heappush(self._heap, (time.monotonic() + delay, next(self._sequence), delivery))
        self._wake.set()

    def _finish(self, delivery: _Delivery, state: DeliveryState) -> None:
        delivery.state = state
        delivery.next_attempt_at = None
        self._pending -= 1
        if self._pending == 0:
            self._idle.set()

    def _retry_delay(self, interval: float) -> float:
        jitter = self._config.webhook_jitter
        factor = 1.0 + (self._dice.rng.uniform(-jitter, jitter) if jitter > 0 else 0.0)
        return interval * self._config.time_compression * factor

    # -- scheduler and senders --------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                timeout = await self._dispatch_due()
            except Exception:  # a bug here must not silently stall every future webhook
                logger.exception("webhook scheduler pass failed", extra={"action": "webhook_bug"})
                timeout = 0.1
            if timeout is None or timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)

    async def _dispatch_due(self) -> float | None:
        """Start every due attempt; return seconds until the next deadline (None: none)."""
        hold = self._config.chaos.webhook_reorder_hold_seconds
        if self._held:
            self._release_held(force=time.monotonic() >= self._held[0][0] + hold)
        assert self._slots is not None
        while self._heap and self._heap[0][0] <= time.monotonic():
            _, _, delivery = heapq.heappop(self._heap)
            # Back-pressure: wait for a free sender rather than spawning unbounded tasks.
            await self._slots.acquire()
            task = asyncio.create_task(self._attempt(delivery))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        deadlines: list[float] = []
        if self._heap:
            deadlines.append(self._heap[0][0])
        if self._held:
            deadlines.append(self._held[0][0] + hold)
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    async def _attempt(self, delivery: _Delivery) -> None:
        assert self._slots is not None
        try:
            attempt, delivered = await self._send(delivery)
        finally:
            self._slots.release()
        delivery.attempts.append(attempt)
        if delivered:
            self._finish(delivery, "delivered")
            logger.info("webhook delivered", extra=self._log(delivery, "webhook_delivered"))
            return
        schedule = self._config.webhook_retry_schedule
        retries_done = len(delivery.attempts) - 1
        if retries_done < len(schedule):
            self._schedule(delivery, self._retry_delay(schedule[retries_done]))
            logger.info("webhook attempt failed", extra=self._log(delivery, "webhook_retry"))
        else:
            self._finish(delivery, "failed")
            logger.warning("webhook gave up", extra=self._log(delivery, "webhook_failed"))

    async def _send(self, delivery: _Delivery) -> tuple[dict[str, Any], bool]:
        assert self._client is not None and delivery.url
        headers = signature.sign_headers(
            delivery.secret, delivery.body, null_as=self._config.webhook_sign_null_as,
            point_on_whole=self._config.webhook_sign_point_on_whole)
        corrupted = self._dice.chance(self._config.chaos.webhook_corrupt_signature_rate)
        if corrupted:
            headers[signature.SIGNATURE_HEADER] = _wrong_signature(
                headers[signature.SIGNATURE_HEADER]
            )
        headers["Content-Type"] = "application/json"
        headers[signature.TRACE_HEADER] = delivery.trace_id
        attempt: dict[str, Any] = {
            "at": time.time(),
            "http_status": None,
            "response_body": "",
            "error": None,
            "signature_corrupted": corrupted,
            "nonce": headers[signature.NONCE_HEADER],
        }
        timeout = self._config.webhook_timeout_seconds
        try:
            # httpx's timeout is per phase; the outer one bounds the whole exchange, as a
            # sender's total request deadline would (a receiver trickling bytes still times out).
            async with asyncio.timeout(timeout):
                response = await self._client.post(
                    delivery.url, content=delivery.body, headers=headers, timeout=timeout
                )
        except (TimeoutError, httpx.TimeoutException) as exc:
            attempt["error"] = f"timeout after {timeout:g} s ({type(exc).__name__})"
            return attempt, False
        except Exception as exc:  # refused, reset, bad URL...: all just a failed attempt
            attempt["error"] = f"{type(exc).__name__}: {exc}"
            return attempt, False
        text = response.text
        attempt["http_status"] = response.status_code
        attempt["response_body"] = text[:RESPONSE_BODY_LIMIT]
        stripped_ok = self._config.webhook_accept_stripped_ok and text.strip() == "ok"
        return attempt, response.status_code == 200 and (text == "ok" or stripped_ok)

    @staticmethod
    def _log(delivery: _Delivery, action: str) -> dict[str, Any]:
        return {
            "action": action,
            "delivery_id": delivery.delivery_id,
            "video_id": delivery.video_id,
            "attempts": len(delivery.attempts),
            "url": delivery.url,
        }


def _wrong_signature(real: str) -> str:
    """A well-formed (base64 of 32 bytes, like HMAC-SHA256) signature that is not ``real``."""
    while True:
        fake = base64.b64encode(os.urandom(32)).decode()
        if fake != real:
            return fake
