"""Contract tests: the real ``PixVerseClient`` against the simulator under uvicorn on loopback.

* :class:`Sim` drives one running simulator: fresh accounts, the ``/_sim`` inspection surface
  (jobs, stats, chaos, forced outcomes) and ready-made ``PixVerseClient`` objects whose
  transport counts the requests that actually left the client.
* ``shared_sim`` is one simulator per module (tests isolate themselves with fresh keys);
  ``sim_factory(**config)`` starts a private one for tests that change sim-wide settings.
* :class:`Receiver` is a webhook endpoint that verifies every delivery with
  :func:`service.pixverse.signature.verify` and answers from a script.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from service.pixverse import PixVerseClient
from service.pixverse.errors import SignatureError
from service.pixverse.signature import VerifiedWebhook, verify
from service.simulator import create_app
from service.simulator.config import Account, ChaosConfig, SimulatorConfig
from tests.support.servers import serve

#: A tiny valid PNG signature plus padding: the simulator checks type and size, not pixels.
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
SECRET = "contract-webhook-secret"
#: Fast retries: PixVerse's 2, 10, 30... seconds become 10, 50, 150... milliseconds.
TIME_COMPRESSION = 0.005


class CountingTransport(httpx.AsyncBaseTransport):
    """The real loopback transport, remembering every request the client sent."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def sent(self, method: str | None = None) -> list[httpx.Request]:
        return [r for r in self.requests if method is None or r.method == method]


class CountingClient(PixVerseClient):
    """The real client on a :class:`CountingTransport` (``.transport``)."""

    def __init__(self, api_key: str, **kwargs: Any) -> None:
        self.transport = CountingTransport()
        super().__init__(api_key, transport=self.transport, **kwargs)


@dataclasses.dataclass
class Sim:
    """One running simulator and its inspection surface."""

    base: str
    http: httpx.Client
    config: SimulatorConfig

    @property
    def api_base(self) -> str:
        return f"{self.base}/openapi/v2"

    def client(self, key: str, **kwargs: Any) -> CountingClient:
        """A client for ``key``; ``client.transport`` counts what it sent."""
        return CountingClient(key, base_url=self.api_base, **kwargs)

    # -- accounts ------------------------------------------------------------------------

    def put_account(self, key: str, **fields: Any) -> dict[str, Any]:
        response = self.http.put(f"/_sim/accounts/{key}", json=fields)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def new_account(self, **fields: Any) -> str:
        """A fresh key (so per-key counters start at zero), funded unless told otherwise."""
        key = f"ct-{uuid.uuid4().hex[:12]}"
        self.put_account(key, **{"credits": 100_000, "concurrency_limit": 50, **fields})
        return key

    # -- inspection ----------------------------------------------------------------------

    def sim_get(self, path: str, **kwargs: Any) -> Any:
        response = self.http.get(f"/_sim{path}", **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def all_stats(self) -> dict[str, Any]:
        data: dict[str, Any] = self.sim_get("/stats")
        return data

    def stats(self, key: str) -> dict[str, Any]:
        """The key's counters, or {} if the simulator never saw an authenticated call."""
        data: dict[str, Any] = self.all_stats()["keys"].get(key, {})
        return data

    def jobs(self, key: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.sim_get("/jobs", params={"api_key": key})["jobs"]
        return found

    def job(self, job_id: int) -> dict[str, Any]:
        data: dict[str, Any] = self.sim_get(f"/jobs/{job_id}")
        return data

    def finish(self, job_id: int, status: int = 1) -> dict[str, Any]:
        """End a job now (its webhook fires) through ``POST /_sim/jobs/{id}/outcome``."""
        response = self.http.post(f"/_sim/jobs/{job_id}/outcome", json={"status": status})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def set_chaos(self, **chaos: Any) -> None:
        """Replace the chaos settings (omitted knobs go back to off)."""
        response = self.http.put("/_sim/chaos", json=chaos)
        assert response.status_code == 200, response.text

    def deliveries(self, video_id: int) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.sim_get(
            "/deliveries", params={"video_id": str(video_id)})["deliveries"]
        return found


def make_config(**overrides: Any) -> SimulatorConfig:
    overrides.setdefault("generation_seconds", 0.3)
    overrides.setdefault("time_compression", TIME_COMPRESSION)
    overrides.setdefault("accounts", {"bootstrap": Account()})
    chaos = overrides.pop("chaos", None)
    if isinstance(chaos, dict):
        chaos = ChaosConfig(**chaos)
    return SimulatorConfig(chaos=chaos or ChaosConfig(), **overrides)


@contextlib.contextmanager
def running_sim(config: SimulatorConfig) -> Iterator[Sim]:
    app = create_app(config)
    with serve(app) as base, httpx.Client(base_url=base, timeout=10) as http:
        yield Sim(base, http, config)


SimFactory = Callable[..., Sim]


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[Sim]:
    """One simulator per module, 300 ms generations; tests isolate with fresh keys."""
    with running_sim(make_config()) as sim:
        yield sim


@pytest.fixture
def sim_factory() -> Iterator[SimFactory]:
    """``sim_factory(**config_overrides)``: a private simulator for the rest of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda **overrides: stack.enter_context(running_sim(make_config(**overrides)))


# -- webhook receiver ---------------------------------------------------------------------------


@dataclasses.dataclass
class Hit:
    """One webhook request as the receiver saw it."""

    at: float  # time.time() on arrival (the simulator's delivery records use the same clock)
    body: bytes
    headers: dict[str, str]
    verified: VerifiedWebhook | None
    answered: tuple[int, str]

    @property
    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.body)
        return data


class Inbox:
    """What one test's webhook URL received. Unverifiable deliveries are answered 401."""

    def __init__(self, url: str, secret: str) -> None:
        self.url = url
        self.secret = secret
        self.script: list[tuple[int, str]] = []  # answers to verified deliveries, then 200 ok
        self.hits: list[Hit] = []
        self._lock = threading.Lock()

    def record(self, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
        try:
            verified: VerifiedWebhook | None = verify(body, headers, [self.secret])
        except SignatureError:
            verified = None
        with self._lock:
            if verified is None:
                answer = (401, "bad signature")
            else:
                answer = self.script.pop(0) if self.script else (200, "ok")
            self.hits.append(Hit(time.time(), body, headers, verified, answer))
        return answer

    @property
    def verified(self) -> list[Hit]:
        with self._lock:
            return [hit for hit in self.hits if hit.verified is not None]

    async def wait_for(self, count: int, *, verified: bool = True,
                       timeout: float = 5.0) -> list[Hit]:
        """Wait until ``count`` (verified) hits arrived; return them."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                hits = [h for h in self.hits if h.verified is not None or not verified]
            if len(hits) >= count:
                return hits
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} hits, got {self.hits}")
            await asyncio.sleep(0.01)


class Receiver:
    """A Starlette webhook receiver; each test gets its own path (its own :class:`Inbox`)."""

    def __init__(self) -> None:
        self.base = ""
        self.inboxes: dict[str, Inbox] = {}
        self.app = Starlette(routes=[Route("/hook/{name}", self._hook, methods=["POST"])])

    def inbox(self, secret: str = SECRET) -> Inbox:
        name = uuid.uuid4().hex
        inbox = self.inboxes[name] = Inbox(f"{self.base}/hook/{name}", secret)
        return inbox

    async def _hook(self, request: Request) -> Response:
        inbox = self.inboxes.get(request.path_params["name"])
        if inbox is None:
            return PlainTextResponse("unknown hook", status_code=404)
        status, text = inbox.record(await request.body(), dict(request.headers))
        return PlainTextResponse(text, status_code=status)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    with serve(receiver.app) as base:
        receiver.base = base
        yield receiver


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 5.0,
                     what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
