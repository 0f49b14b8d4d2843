"""Shared pieces for the simulator API tests: a recording dispatcher and a small HTTP driver."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from service.simulator import create_app
from service.simulator.config import Account, SimulatorConfig
from service.simulator.pricing import PriceFunction, price
from tests.support.servers import serve

KEY = "test-key"
OTHER_KEY = "other-key"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64

SHARED_GENERATION_SECONDS = 0.25

TEXT_BODY: dict[str, Any] = {
    "prompt": "a paper lantern drifts over a misty lake",
    "model": "v5", "duration": 5, "quality": "540p", "aspect_ratio": "16:9",
}


class RecordingDispatcher:
    """Stand-in for the webhook dispatcher: remembers what was published."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []
        self.started = False
        self.stopped = False
        self._lock = threading.Lock()

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def publish(self, *, api_key: str, payload: dict[str, Any], trace_id: str,
                url: str | None = None) -> None:
        with self._lock:
            self.published.append({"api_key": api_key, "payload": payload, "trace_id": trace_id,
                                   "url": url})

    def deliveries(self, video_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [p for p in self.published
                    if video_id is None or p["payload"]["id"] == str(video_id)]

    def for_video(self, video_id: int) -> list[dict[str, Any]]:
        return [p["payload"] for p in self.deliveries(str(video_id))]


@dataclasses.dataclass
class Sim:
    """An HTTP driver for one running simulator, calling as ``key`` by default."""

    base: str
    client: httpx.Client
    dispatcher: RecordingDispatcher
    config: SimulatorConfig
    key: str = KEY
    other_key: str = OTHER_KEY

    def with_fresh_keys(self) -> Sim:
        """The same simulator seen through two new funded keys (isolates per-key counters)."""
        fresh = dataclasses.replace(self, key=f"k-{uuid.uuid4().hex[:12]}",
                                    other_key=f"o-{uuid.uuid4().hex[:12]}")
        for key in (fresh.key, fresh.other_key):
            response = self.client.put(f"/_sim/accounts/{key}",
                                       json={"credits": 100_000, "concurrency_limit": 50})
            assert response.status_code == 200, response.text
        return fresh

    def call(self, method: str, path: str, *, key: str | None = "", trace: str | None = "new",
             **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if key == "":
            key = self.key
        if key is not None:
            headers["API-KEY"] = key
        if trace is not None:
            headers["Ai-trace-id"] = str(uuid.uuid4()) if trace == "new" else trace
        return self.client.request(method, f"/openapi/v2{path}", headers=headers, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
        response = self.call("POST", path, json=body, **kwargs)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def get(self, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.call("GET", path, **kwargs)
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def ok(self, path: str, body: Any = None, **kwargs: Any) -> dict[str, Any]:
        data = self.post(path, body, **kwargs)
        assert data["ErrCode"] == 0, data
        resp: dict[str, Any] = data["Resp"]
        return resp

    def upload_image(self, *, key: str = "", name: str = "frame.png",
                     content: bytes = PNG) -> int:
        response = self.call("POST", "/image/upload", key=key,
                             files={"image": (name, content, "image/png")})
        data = response.json()
        assert data["ErrCode"] == 0, data
        return int(data["Resp"]["img_id"])

    def upload_media(self, name: str, mime: str, content: bytes = b"x" * 1000, *,
                     key: str = "") -> int:
        response = self.call("POST", "/media/upload", key=key,
                             files={"file": (name, content, mime)})
        data = response.json()
        assert data["ErrCode"] == 0, data
        return int(data["Resp"]["media_id"])

    def text_video(self, **overrides: Any) -> int:
        return int(self.ok("/video/text/generate", {**TEXT_BODY, **overrides})["video_id"])

    def result(self, video_id: int, **kwargs: Any) -> dict[str, Any]:
        data = self.get(f"/video/result/{video_id}", **kwargs)
        assert data["ErrCode"] == 0, data
        resp: dict[str, Any] = data["Resp"]
        return resp

    def sim_get(self, path: str, **kwargs: Any) -> Any:
        response = self.client.get(f"/_sim{path}", **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def job(self, video_id: int) -> dict[str, Any]:
        data: dict[str, Any] = self.sim_get(f"/jobs/{video_id}")
        return data

    def stats(self, key: str = "") -> dict[str, Any]:
        data: dict[str, Any] = self.sim_get("/stats")["keys"].get(key or self.key, {})
        return data

    def jobs(self, key: str = "") -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.sim_get("/jobs", params={"api_key": key or self.key})[
            "jobs"]
        return found

    def wait_job(self, video_id: int, *, timeout: float = 5.0) -> dict[str, Any]:
        """Wait (via the inspection surface, not a status poll) until the job ended."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(video_id)
            if job["status"] != 5:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {video_id} still generating")
            time.sleep(0.01)

    def finish(self, video_id: int, status: int = 1) -> dict[str, Any]:
        """End a job now through the inspection surface."""
        response = self.client.post(f"/_sim/jobs/{video_id}/outcome", json={"status": status})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def wait_published(self, video_id: int, count: int = 1, timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(found := self.dispatcher.for_video(video_id)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"no webhook published for {video_id}: {found}")
            time.sleep(0.01)
        return found


def make_config(**overrides: Any) -> SimulatorConfig:
    accounts = overrides.pop("accounts", None) or {
        KEY: Account(credit_monthly=100_000, concurrency_limit=50),
        OTHER_KEY: Account(credit_monthly=100_000, concurrency_limit=50),
    }
    overrides.setdefault("generation_seconds", 0.05)
    return SimulatorConfig(accounts=accounts, **overrides)


@contextlib.contextmanager
def running(config: SimulatorConfig | None = None, *, timeout: float = 10.0,
            price_function: PriceFunction = price, **overrides: Any) -> Iterator[Sim]:
    config = config or make_config(**overrides)
    dispatcher = RecordingDispatcher()
    app = create_app(config, dispatcher=dispatcher, price_function=price_function)
    with serve(app) as base, httpx.Client(base_url=base, timeout=timeout) as client:
        yield Sim(base, client, dispatcher, config)


SimFactory = Callable[..., Sim]


@pytest.fixture
def sim_factory() -> Iterator[SimFactory]:
    """``sim_factory(**config_overrides)`` starts a simulator for the rest of the test."""
    with contextlib.ExitStack() as stack:
        yield lambda config=None, **overrides: stack.enter_context(running(config, **overrides))


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[Sim]:
    # Long enough that "still generating" assertions right after a submit are not racy.
    with running(generation_seconds=SHARED_GENERATION_SECONDS) as sim:
        yield sim


@pytest.fixture
def sim(shared_sim: Sim) -> Sim:
    """The module's simulator (250 ms generations) seen through fresh keys.

    Tests that need another configuration use ``sim_factory`` instead.
    """
    return shared_sim.with_fresh_keys()
