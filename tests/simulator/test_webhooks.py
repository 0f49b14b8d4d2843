"""The simulator's webhook delivery engine against a real receiver served by uvicorn."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from service.pixverse.errors import MalformedPayloadError, SignatureError
from service.pixverse.signature import verify
from service.simulator.config import Account, ChaosConfig, SimulatorConfig
from service.simulator.webhooks import WebhookDispatcher
from tests.support.servers import serve

SECRET = "whsec-test-secret-do-not-leak"
KEY = "test-key"
TRACE = "trace-7f3a"


def payload(video_id: int = 384920175633408, status: int = 1) -> dict[str, Any]:
    return {
        "id": str(video_id),
        "status": status,
        "url": f"https://media.example/{video_id}.mp4",
        "size": 1234,
        "has_audio": False,
        "credits": 45,
    }


@dataclasses.dataclass
class Hit:
    at: float  # time.monotonic() on arrival
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def video_id(self) -> str:
        return str(json.loads(self.body)["id"])

    def signature_ok(self) -> bool:
        try:
            verify(self.body, self.headers, [SECRET])
        except SignatureError:
            return False
        return True


class Receiver:
    """Records every request and answers from a script, then with ``default``."""

    def __init__(self) -> None:
        self.hits: list[Hit] = []
        self.script: list[tuple[int, str]] = []
        self.default: tuple[int, str] = (200, "ok")
        self.delay = 0.0
        self.check_signature = False
        self.in_flight = 0
        self.max_in_flight = 0
        self.url = ""
        self.app = Starlette(routes=[
            Route("/hook", self._hook, methods=["POST"]),
            Route("/moved", self._moved, methods=["POST"]),
        ])

    async def _hook(self, request: Request) -> Response:
        hit = Hit(time.monotonic(), "/hook", dict(request.headers), await request.body())
        self.hits.append(hit)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.check_signature and not hit.signature_ok():
            return PlainTextResponse("bad signature", status_code=401)
        status, text = self.script.pop(0) if self.script else self.default
        return PlainTextResponse(text, status_code=status)

    async def _moved(self, request: Request) -> Response:
        self.hits.append(Hit(time.monotonic(), "/moved", dict(request.headers), b""))
        return RedirectResponse("/hook", status_code=307)


class _Plug:
    """One uvicorn server for the module (starting one per test doubles the run time);
    each test plugs in a fresh :class:`Receiver`."""

    def __init__(self) -> None:
        self.target: Receiver | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        assert self.target is not None
        await self.target.app(scope, receive, send)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[_Plug, str]]:
    plug = _Plug()
    with serve(plug) as base_url:
        yield plug, base_url


@pytest.fixture
def receiver(server: tuple[_Plug, str]) -> Receiver:
    plug, base_url = server
    plug.target = Receiver()
    plug.target.url = f"{base_url}/hook"
    return plug.target


def make_config(url: str | None, **overrides: Any) -> SimulatorConfig:
    settings: dict[str, Any] = {
        "webhook_retry_schedule": (0.01, 0.01, 0.01),
        "time_compression": 1.0,
        "webhook_timeout_seconds": 2.0,
    }
    settings.update(overrides)
    return SimulatorConfig(
        accounts={KEY: Account(webhook_url=url, webhook_secret=SECRET)}, **settings
    )


Factory = Callable[..., Awaitable[WebhookDispatcher]]


@pytest.fixture
async def dispatcher_for(receiver: Receiver) -> AsyncIterator[Factory]:
    """Build and start dispatchers; all are stopped before the receiver shuts down."""
    started: list[WebhookDispatcher] = []

    async def make(config: SimulatorConfig, **kwargs: Any) -> WebhookDispatcher:
        dispatcher = WebhookDispatcher(config, **kwargs)
        await dispatcher.start()
        started.append(dispatcher)
        return dispatcher

    yield make
    for dispatcher in started:
        await dispatcher.stop()


async def settle(dispatcher: WebhookDispatcher, timeout: float = 5.0) -> list[dict[str, Any]]:
    assert await dispatcher.wait_idle(timeout), dispatcher.deliveries()
    return dispatcher.deliveries()


# -- the wire format -------------------------------------------------------------------------


async def test_delivery_is_signed_and_carries_the_trace_id(receiver, dispatcher_for):
    dispatcher = await dispatcher_for(make_config(receiver.url))
    dispatcher.publish(api_key=KEY, payload=payload(), trace_id=TRACE)
    [record] = await settle(dispatcher)

    [hit] = receiver.hits
    assert hit.body == json.dumps(payload(), separators=(",", ":")).encode()
    assert hit.headers["content-type"] == "application/json"
    assert hit.headers["ai-trace-id"] == TRACE
    assert re.fullmatch(r"[A-Za-z0-9]{32}", hit.headers["webhook-nonce"])
    assert abs(int(hit.headers["webhook-timestamp"]) - time.time()) < 5
    verified = verify(hit.body, hit.headers, [SECRET])
    assert verified.payload == payload()

    assert record["state"] == "delivered"
    assert record["video_id"] == "384920175633408"
    assert record["status"] == 1
    assert record["trace_id"] == TRACE
    assert record["url"] == receiver.url
    assert record["duplicate_of"] is None
    assert record["next_attempt_at"] is None
    [attempt] = record["attempts"]
    assert attempt["http_status"] == 200
    assert attempt["response_body"] == "ok"
    assert attempt["error"] is None
    assert attempt["signature_corrupted"] is False
    assert attempt["nonce"] == hit.headers["webhook-nonce"]
    json.dumps(dispatcher.deliveries())  # JSON-able


async def test_no_url_sends_nothing(receiver, dispatcher_for):
    dispatcher = await dispatcher_for(make_config(None))
    dispatcher.publish(api_key=KEY, payload=payload(1), trace_id=TRACE)
    dispatcher.publish(api_key="unknown-key", payload=payload(2), trace_id=TRACE)
    assert await dispatcher.wait_idle(0.1)
    await asyncio.sleep(0.1)
    assert receiver.hits == []
    assert [r["state"] for r in dispatcher.deliveries()] == ["no_url", "no_url"]
    assert [r["attempts"] for r in dispatcher.deliveries()] == [[], []]
    assert [r["video_id"] for r in dispatcher.deliveries("2")] == ["2"]


async def test_unsignable_payload_is_refused_at_publish(receiver, dispatcher_for):
    dispatcher = await dispatcher_for(make_config(receiver.url))
    with pytest.raises(MalformedPayloadError):
        dispatcher.publish(api_key=KEY, payload={"id": "1", "extra": {"nested": 1}}, trace_id=TRACE)
    assert dispatcher.deliveries() == []


# -- success criteria and retries ------------------------------------------------------------


async def test_retries_until_ok_with_growing_intervals(receiver, dispatcher_for):
    receiver.script = [(500, "boom"), (200, "nope"), (503, "")]
    config = make_config(receiver.url, webhook_retry_schedule=(1.0, 2.0, 4.0, 8.0),
                         time_compression=0.05, webhook_jitter=0.1)
    dispatcher = await dispatcher_for(config)
    dispatcher.publish(api_key=KEY, payload=payload(), trace_id=TRACE)
    [record] = await settle(dispatcher)

    assert record["state"] == "delivered"
    assert [a["http_status"] for a in record["attempts"]] == [500, 200, 503, 200]
    assert [a["response_body"] for a in record["attempts"]] == ["boom", "nope", "", "ok"]
    assert len(receiver.hits) == 4
    # Same event, same body; fresh nonce (and valid signature) on every attempt.
    assert len({hit.body for hit in receiver.hits}) == 1
    assert len({hit.headers["webhook-nonce"] for hit in receiver.hits}) == 4
    assert all(hit.signature_ok() for hit in receiver.hits)
    assert all(hit.headers["ai-trace-id"] == TRACE for hit in receiver.hits)
    gaps = [b.at - a.at for a, b in zip(receiver.hits, receiver.hits[1:])]
    # Nominal 0.05, 0.10, 0.20 s, each ±10 %.
    assert gaps[0] >= 0.04
    assert gaps[0] < gaps[1] < gaps[2]
    assert 1.4 < gaps[1] / gaps[0] < 2.8
    assert 1.4 < gaps[2] / gaps[1] < 2.8


@pytest.mark.parametrize(
    ("status", "body"),
    [(200, "ok\n"), (200, " ok"), (200, "OK"), (200, "ok."), (201, "ok"), (204, ""), (500, "ok")],
)
async def test_anything_but_200_ok_fails(receiver, dispatcher_for, status, body):
    receiver.default = (status, body)
    dispatcher = await dispatcher_for(make_config(receiver.url, webhook_retry_schedule=(0.01,)))
    dispatcher.publish(api_key=KEY, payload=payload(), trace_id=TRACE)
    [record] = await settle(dispatcher)
    assert record["state"] == "failed"
    assert [a["http_status"] for a in record["attempts"]] == [status, status]
    assert len(receiver.hits) == 2


@pytest.mark.parametrize(("body", "state"), [("ok\n", "delivered"), ("  ok ", "delivered"),
                                             ("OK", "failed")])
async def test_accept_stripped_ok_tolerates_whitespace_only(receiver, dispatcher_for, body, state):
    receiver.default = (200, body)
    config = make_config(receiver.url, webhook_retry_schedule=(0.01,),
                         webhook_accept_stripped_ok=True)
    dispatcher = await dispatcher_for(config)
    dispatcher.publish(api_key=KEY, payload=payload(), trace_id=TRACE)
    [record] = await settle(dispatcher)
    assert record["state"] == state


async def test_gives_up_after_the_schedule(receiver, dispatcher_for):
    receiver.default = (500, "down")
    dispatcher = await dispatcher_for(make_config(receiver.url))
    dispatcher.publish(api_key=KEY, payload=payload(), trace_id=TRACE)
    [record] = await settle(dispatcher)
    assert record["state"] == "failed"
    assert len(record["attempts"]) == 4  # first try + 3 retries
    assert len(receiver.hits) == 4
    assert record["next_attempt_at"] is None


async def test_default_schedule_means_nine_attempts(receiver, dispatcher_for):
    receiver.default = (500, "down")
    # PixVerse's 8 intervals sum to 20 362 s; compressed to about one second.
    config = SimulatorConfig(accounts={KEY: Account(webhook_url=receiver.url,
                                                    webhook_secret=SECRET)},
                             time_compression=0.00005)
    dispatcher = await dispatcher_for(config)
    dispatcher.publish(api_key=KEY, payload=payload(), trace_id=TRACE)
    [record] = await settle(dispatcher)
    assert record["state"] == "failed"
    assert len(record["attempts"]) == 9
    assert len(receiver.hits) == 9


async def test_pending_retry_is_visible_and_stop_is_clean(receiver, dispatcher_for):
    receiver.default = (500, "down")
    config = make_config(receiver.url, webhook_retry_schedule=(100.0,), webhook_jitter=0.1)
    dispatcher = await dispatcher_for(config)
    dispatcher.publish(api_key=KEY, payload=payload(), trace_id=TRACE)
    async with asyncio.timeout(5):
        while not dispatcher.deliveries()[0]["attempts"]:
            await asyncio.sleep(0.01)
    [record] = dispatcher.deliveries()
    assert record["state"] == "pending"
    wait = record["next_attempt_at"] - record["attempts"][0]["at"]
    assert 89 < wait < 111  # 100 s ± 10 % jitter
    assert await dispatcher.wait_idle(0.05) is False
    await dispatcher.stop()
    assert dispatcher.deliveries()[0]["state"] == "pending"


async def test_timeout_is_a_failed_attempt(receiver, dispatcher_for):
    receiver.delay = 0.5
    config = make_config(receiver.url, webhook_retry_schedule=(), webhook_timeout_seconds=0.1)
    dispatcher = await dispatcher_for(config)
    dispatcher.publish(api_key=KEY, payload=payload(), trace_id=TRACE)
    [record] = await settle(dispatcher)
    [attempt] = record["attempts"]
    assert record["state"] == "failed"
    assert attempt["http_status"] is None
    assert "timeout" in attempt["error"]


async def test_connection_error_is_a_failed_attempt(receiver, dispatcher_for):
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = make_config(f"http://127.0.0.1:{port}/hook", webhook_retry_schedule=(0.01,))
    dispatcher = await dispatcher_for(config)
    dispatcher.publish(api_key=KEY, payload=payload(), trace_id=TRACE)
    [record] = await settle(dispatcher)
    assert record["state"] == "failed"
    assert len(record["attempts"]) == 2
    assert all(a["http_status"] is None and a["error"] for a in record["attempts"])


async def test_redirects_are_not_followed(receiver, dispatcher_for):
    url = receiver.url.replace("/hook", "/moved")
    dispatcher = await dispatcher_for(make_config(url, webhook_retry_schedule=()))
    dispatcher.publish(api_key=KEY, payload=payload(), trace_id=TRACE)
    [record] = await settle(dispatcher)
    assert record["state"] == "failed"
    assert record["attempts"][0]["http_status"] == 307
    assert [hit.path for hit in receiver.hits] == ["/moved"]


async def test_secret_is_never_recorded_or_logged(receiver, dispatcher_for, caplog):
    caplog.set_level(logging.DEBUG)
    receiver.script = [(500, "down")]
    config = make_config(receiver.url, chaos=ChaosConfig(webhook_corrupt_signature_rate=0.5,
                                                         seed=1))
    dispatcher = await dispatcher_for(config)
    for video_id in range(5):
        dispatcher.publish(api_key=KEY, payload=payload(video_id), trace_id=TRACE)
    records = await settle(dispatcher)
    assert SECRET not in json.dumps(records)
    assert SECRET not in repr(records)
    assert SECRET not in caplog.text
    assert caplog.records  # the dispatcher did log, and the check above is meaningful


# -- scale -----------------------------------------------------------------------------------


async def test_concurrent_sends_are_bounded(receiver, dispatcher_for):
    receiver.delay = 0.02
    dispatcher = await dispatcher_for(make_config(receiver.url, webhook_max_concurrency=4))
    for video_id in range(60):
        dispatcher.publish(api_key=KEY, payload=payload(video_id), trace_id=TRACE)
    records = await settle(dispatcher)
    assert {r["state"] for r in records} == {"delivered"}
    assert len(receiver.hits) == 60
    assert 2 <= receiver.max_in_flight <= 4


async def test_thousands_of_deliveries_with_retries_all_arrive():
    """Many pending retries live in one heap, and every one is delivered; checked in-process via
    the transport seam. (How fast is a benchmark's business, not a test's: on a loaded machine
    this takes several times longer.)"""
    seen: dict[str, int] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        video_id = json.loads(request.content)["id"]
        seen[video_id] = seen.get(video_id, 0) + 1
        # Every event fails twice before it is accepted.
        return httpx.Response(200, text="ok" if seen[video_id] > 2 else "retry")

    config = make_config("http://receiver.test/hook", webhook_max_concurrency=64)
    dispatcher = WebhookDispatcher(config, transport=httpx.MockTransport(handler))
    for video_id in range(3000):  # published before start: held until the scheduler runs
        dispatcher.publish(api_key=KEY, payload=payload(video_id), trace_id=TRACE)
    await dispatcher.start()
    try:
        records = await settle(dispatcher, timeout=120)
    finally:
        await dispatcher.stop()
    assert len(records) == 3000
    assert {r["state"] for r in records} == {"delivered"}
    assert {len(r["attempts"]) for r in records} == {3}


# -- chaos -----------------------------------------------------------------------------------


async def test_chaos_drop_records_and_sends_nothing(receiver, dispatcher_for):
    config = make_config(receiver.url)
    dispatcher = await dispatcher_for(config)
    config.chaos.webhook_drop_rate = 1.0  # changed at runtime, as PUT /_sim/chaos does
    dispatcher.publish(api_key=KEY, payload=payload(), trace_id=TRACE)
    [record] = await settle(dispatcher)
    await asyncio.sleep(0.1)
    assert record["state"] == "dropped"
    assert record["attempts"] == []
    assert receiver.hits == []


async def test_chaos_duplicate_sends_two_independent_deliveries(receiver, dispatcher_for):
    config = make_config(receiver.url, chaos=ChaosConfig(webhook_duplicate_rate=1.0, seed=5))
    dispatcher = await dispatcher_for(config)
    dispatcher.publish(api_key=KEY, payload=payload(), trace_id=TRACE)
    original, copy = await settle(dispatcher)
    assert original["duplicate_of"] is None
    assert copy["duplicate_of"] == original["delivery_id"]
    assert original["delivery_id"] != copy["delivery_id"]
    assert original["state"] == copy["state"] == "delivered"
    assert len(receiver.hits) == 2
    assert receiver.hits[0].body == receiver.hits[1].body
    assert receiver.hits[0].headers["webhook-nonce"] != receiver.hits[1].headers["webhook-nonce"]
    assert all(hit.signature_ok() for hit in receiver.hits)


async def test_chaos_delay_postpones_the_first_attempt(receiver, dispatcher_for):
    config = make_config(receiver.url,
                         chaos=ChaosConfig(webhook_delay_max_seconds=0.4, seed=11))
    dispatcher = await dispatcher_for(config)
    for video_id in range(8):
        dispatcher.publish(api_key=KEY, payload=payload(video_id), trace_id=TRACE)
    records = await settle(dispatcher)
    waits = [r["attempts"][0]["at"] - r["created_at"] for r in records]
    assert all(wait < 0.4 + 0.15 for wait in waits)
    assert max(waits) > 0.15
    assert max(waits) - min(waits) > 0.1


async def test_chaos_reorder_shuffles_a_full_batch(receiver, dispatcher_for):
    # One sender at a time, so arrival order is release order.
    chaos = ChaosConfig(webhook_reorder_window=6, webhook_reorder_hold_seconds=5.0, seed=3)
    config = make_config(receiver.url, webhook_max_concurrency=1, chaos=chaos)
    dispatcher = await dispatcher_for(config)
    published = [str(video_id) for video_id in range(6)]
    for video_id in published:
        dispatcher.publish(api_key=KEY, payload=payload(int(video_id)), trace_id=TRACE)
    await settle(dispatcher, timeout=2)  # well inside the hold: the full batch went at once
    arrived = [hit.video_id for hit in receiver.hits]
    assert sorted(arrived) == published
    assert arrived != published


async def test_without_reorder_order_is_kept(receiver, dispatcher_for):
    dispatcher = await dispatcher_for(make_config(receiver.url, webhook_max_concurrency=1))
    published = [str(video_id) for video_id in range(6)]
    for video_id in published:
        dispatcher.publish(api_key=KEY, payload=payload(int(video_id)), trace_id=TRACE)
    await settle(dispatcher)
    assert [hit.video_id for hit in receiver.hits] == published


async def test_chaos_reorder_releases_a_partial_batch_after_the_hold(receiver, dispatcher_for):
    chaos = ChaosConfig(webhook_reorder_window=10, webhook_reorder_hold_seconds=0.3, seed=3)
    dispatcher = await dispatcher_for(make_config(receiver.url, chaos=chaos))
    for video_id in range(3):
        dispatcher.publish(api_key=KEY, payload=payload(video_id), trace_id=TRACE)
    await asyncio.sleep(0.15)
    assert receiver.hits == []  # still held
    assert [r["state"] for r in dispatcher.deliveries()] == ["pending"] * 3
    records = await settle(dispatcher, timeout=3)
    assert [r["state"] for r in records] == ["delivered"] * 3
    assert all(r["attempts"][0]["at"] - r["created_at"] >= 0.25 for r in records)


async def test_chaos_corrupt_signature_fails_verification_and_retries(receiver, dispatcher_for):
    receiver.check_signature = True
    config = make_config(receiver.url, webhook_retry_schedule=(0.01, 0.01),
                         chaos=ChaosConfig(webhook_corrupt_signature_rate=1.0, seed=2))
    dispatcher = await dispatcher_for(config)
    dispatcher.publish(api_key=KEY, payload=payload(1), trace_id=TRACE)
    [record] = await settle(dispatcher)
    assert record["state"] == "failed"
    assert [a["signature_corrupted"] for a in record["attempts"]] == [True] * 3
    assert [a["http_status"] for a in record["attempts"]] == [401] * 3
    for hit in receiver.hits:
        assert not hit.signature_ok()
        assert len(base64.b64decode(hit.headers["webhook-signature"], validate=True)) == 32

    # Replacing the chaos settings at runtime (PUT /_sim/chaos) takes effect on the next event.
    config.chaos = ChaosConfig()
    dispatcher.publish(api_key=KEY, payload=payload(2), trace_id=TRACE)
    await settle(dispatcher)
    [record] = dispatcher.deliveries("2")
    assert record["state"] == "delivered"
    assert record["attempts"][0]["signature_corrupted"] is False
    assert receiver.hits[-1].signature_ok()


async def test_chaos_is_reproducible_from_the_seed(receiver, dispatcher_for):
    def outcome(dispatcher: WebhookDispatcher) -> list[str]:
        return [r["state"] + ("*" if r["duplicate_of"] else "") for r in dispatcher.deliveries()]

    outcomes = []
    for _ in range(2):
        chaos = ChaosConfig(webhook_drop_rate=0.3, webhook_duplicate_rate=0.3, seed=42)
        dispatcher = await dispatcher_for(make_config(receiver.url, chaos=chaos))
        for video_id in range(20):
            dispatcher.publish(api_key=KEY, payload=payload(video_id), trace_id=TRACE)
        await settle(dispatcher)
        outcomes.append(outcome(dispatcher))
    assert outcomes[0] == outcomes[1]
    assert {"dropped", "delivered", "delivered*"} <= set(outcomes[0])
