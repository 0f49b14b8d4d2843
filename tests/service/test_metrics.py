"""/metrics, /readyz and /healthz: a real stack's counts, scraped and parsed as Prometheus does."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service.app import create_app
from service.health import HealthAPI
from service.metrics import Histogram, Metrics, Registry
from service.pixverse import signature
from service.settings import Settings
from service.simulator.config import DEFAULT_API_KEY
from service.store import SQLiteStore, WorkerHeartbeat
from tests.service.conftest import Stack
from tests.support.servers import running_server

FORWARD_SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, by (name, labels); fails on anything Prometheus would."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in samples, key
            samples[key] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@contextlib.asynccontextmanager
async def instrumented(stack: Stack, **overrides: Any) -> AsyncIterator[Starlette]:
    """Like ``stack.service()``, with metrics counted and the health routes mounted."""
    settings = dataclasses.replace(stack.settings, **overrides)
    app = create_app(settings)
    services = app.state.services
    metrics = getattr(services, "metrics", None)
    if metrics is None:  # until create_app wires them itself
        metrics = Metrics()
        for part in (services.receiver, services.reconciler, services.submitter,
                     services.runner):
            part.metrics = metrics
        services.store.bind(observer=metrics.record_transition)  # transitions are counted there
        app.router.routes[:0] = HealthAPI(services.store, settings, metrics=metrics,
                                          runner=services.runner).routes()
    async with running_server(app, port=stack.port) as url:
        stack.service_url = url
        stack.sim.accounts[DEFAULT_API_KEY].webhook_url = f"{url}/webhooks/pixverse"
        yield app


async def scrape(stack: Stack, **headers: str) -> Samples:
    response = await stack.http.get(f"{stack.service_url}/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


async def post_webhook(stack: Stack, body: bytes, headers: dict[str, str]) -> int:
    response = await stack.http.post(f"{stack.service_url}/webhooks/pixverse", content=body,
                                     headers={**headers, "Content-Type": "application/json"})
    return response.status_code


def _failing_callback() -> Starlette:
    async def hook(request: Request) -> PlainTextResponse:
        return PlainTextResponse("down", status_code=500)
    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


def check_histogram(samples: Samples, name: str) -> float:
    """Buckets are cumulative and end in +Inf == count; returns the count."""
    buckets = sorted(((float(dict(labels)["le"]), v) for (n, labels), v in samples.items()
                      if n == f"{name}_bucket"), key=lambda pair: pair[0])
    assert buckets and math.isinf(buckets[-1][0])
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)
    count = value(samples, f"{name}_count")
    assert counts[-1] == count
    assert value(samples, f"{name}_sum") >= 0
    return count


async def test_a_real_run_shows_up_in_metrics(stack: Stack) -> None:
    secret = stack.settings.pixverse_webhook_secret
    async with running_server(_failing_callback()) as callback_base, \
            instrumented(stack, forward_secret=FORWARD_SECRET, task_max_attempts=2):
        plain = await stack.submit()
        forwarded = await stack.submit(callback_url=f"{callback_base}/hook")
        for job in (plain, forwarded):
            await stack.wait_for(job["id"], "succeeded")
        await stack.wait_for_tasks(plain["id"], "succeeded")
        tasks = await stack.wait_for_tasks(forwarded["id"], "succeeded", "dead")
        assert sorted(t["handler"] for t in tasks if t["state"] == "dead") == ["forward"] * 2

        video_id = (await stack.job(plain["id"]))["video_id"]
        event = json.dumps({"id": str(video_id), "status": 1, "url": "", "size": 0}).encode()
        again = signature.sign_headers(secret, event)
        assert await post_webhook(stack, event, again) == 200  # a state the job has
        assert await post_webhook(stack, event, again) == 409  # the same nonce
        assert await post_webhook(stack, event, signature.sign_headers("wrong", event)) == 401
        stale = signature.sign_headers(secret, event, timestamp=int(time.time()) - 3600)
        assert await post_webhook(stack, event, stale) == 401
        orphan = json.dumps({"id": "4242", "status": 1, "url": "", "size": 0}).encode()
        assert await post_webhook(stack, orphan, signature.sign_headers(secret, orphan)) == 200

        samples = await scrape(stack)
        all_tasks = await stack.tasks()
        sim = await stack.sim_stats()

    webhooks = {outcome: value(samples, "pixhook_webhooks_total", outcome=outcome)
                for outcome in ("ok", "duplicate", "bad_signature", "stale", "orphan",
                                "malformed", "ignored")}
    assert webhooks == {"ok": 2, "duplicate": 2, "bad_signature": 1, "stale": 1, "orphan": 1,
                        "malformed": 0, "ignored": 0}
    assert check_histogram(samples, "pixhook_webhook_handling_seconds") == 7

    def transitions(state: str, source: str, outcome: str = "applied") -> float:
        return value(samples, "pixhook_transitions_total", state=state, source=source,
                     outcome=outcome)
    assert [transitions(s, "submit") for s in ("queued", "submitting", "generating")] \
        == [2, 2, 2]
    assert transitions("succeeded", "webhook") == 2
    assert transitions("succeeded", "webhook", "duplicate") == 1

    assert value(samples, "pixhook_status_polls_total") == sim.get("status_calls", 0) == 0
    assert value(samples, "pixhook_handler_runs_total", handler="download",
                 outcome="succeeded") == 2
    assert value(samples, "pixhook_handler_runs_total", handler="forward", outcome="retry") == 2
    assert value(samples, "pixhook_handler_runs_total", handler="forward", outcome="dead") == 2
    # Every task ran at least once, and its first start was timed.
    assert check_histogram(samples, "pixhook_webhook_to_handler_start_seconds") \
        == len(all_tasks)

    assert {s: value(samples, "pixhook_tasks", state=s) for s in ("pending", "running", "dead")} \
        == {"pending": 0, "running": 0, "dead": 2}
    assert value(samples, "pixhook_jobs", state="succeeded") == 2
    assert value(samples, "pixhook_jobs", state="queued") == 0
    assert ("pixhook_jobs", frozenset({("state", "failed")})) in samples  # zeros are shown


async def test_readyz_with_the_worker_running(stack: Stack) -> None:
    async with instrumented(stack):
        assert (await stack.http.get(f"{stack.service_url}/healthz")).text == "ok"
        response = await stack.http.get(f"{stack.service_url}/readyz")
        assert response.status_code == 200
        assert response.json() == {"database": "ok", "worker": "ok", "settings": "ok"}


@dataclasses.dataclass
class Beat:
    """What readiness reads of a task runner."""

    heartbeat_at: float | None


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(str(tmp_path / "pixhook.db")) as opened:
        yield opened


async def _get(app: Starlette, path: str, **headers: str) -> httpx.Response:
    async with running_server(app) as url, httpx.AsyncClient(timeout=5) as http:
        return await http.get(f"{url}{path}", headers=headers)


async def test_readyz_fails_on_a_stale_heartbeat_and_a_closed_store(
        store: SQLiteStore) -> None:
    now = 1_000_000.0
    beat = Beat(heartbeat_at=None)
    configured = Settings(pixverse_api_key="k", pixverse_webhook_secret="s", api_token="t")

    def health(runner: Beat | None, settings: Settings = configured) -> Starlette:
        return HealthAPI(store, settings, runner=runner, stale_after=10.0,
                         clock=lambda: now).app()

    async def ready(runner: Beat | None, settings: Settings = configured) -> tuple[int, str]:
        response = await _get(health(runner, settings), "/readyz")
        body = response.json()
        return response.status_code, ",".join(
            f"{k}={v}" for k, v in body.items() if k != "reason")

    ok = "settings=ok"
    assert await ready(beat) == (503, f"database=ok,worker=starting,{ok}")
    beat.heartbeat_at = now - 9.0
    assert await ready(beat) == (200, f"database=ok,worker=ok,{ok}")
    beat.heartbeat_at = now - 11.0
    assert await ready(beat) == (503, f"database=ok,worker=stale,{ok}")
    # A web process reads the workers' heartbeats from the database.
    assert await ready(None) == (503, f"database=ok,worker=none,{ok}")
    await store.beat_worker(WorkerHeartbeat(
        id="w", host="h", pid=1, version="v", roles=("worker",), started_at=now - 60,
        beat_at=now - 9.0, tasks_running=0))
    assert await ready(None) == (200, f"database=ok,worker=ok,{ok}")
    # ...and so does serve, whose own runner is stale here: another worker is alive.
    assert await ready(beat) == (200, f"database=ok,worker=ok,{ok}")
    # A required setting missing: not ready, whatever the rest says.
    assert await ready(None, Settings(api_token="t")) == (
        503, "database=ok,worker=ok,settings=missing PIXVERSE_WEBHOOK_SECRET")
    await store.close()
    assert await ready(None) == (503, f"database=failed,worker=none,{ok}")
    response = await _get(health(None), "/readyz")
    assert response.json()["reason"].startswith("the database does not answer")
    assert (await _get(health(None), "/healthz")).text == "ok"


async def test_metrics_token_when_set(store: SQLiteStore) -> None:
    metrics = Metrics()
    app = HealthAPI(store, Settings(metrics_token="scrape-me"), metrics=metrics).app()
    refused = await _get(app, "/metrics")
    assert refused.status_code == 401 and "pixhook" not in refused.text
    assert (await _get(app, "/metrics", authorization="Bearer wrong")).status_code == 401
    allowed = await _get(app, "/metrics", authorization="Bearer scrape-me")
    assert allowed.status_code == 200
    assert value(parse(allowed.text), "pixhook_tasks", state="pending") == 0
    open_app = HealthAPI(store, Settings(), metrics=metrics).app()
    assert (await _get(open_app, "/metrics")).status_code == 200


async def test_a_failing_store_leaves_the_gauges_out(store: SQLiteStore) -> None:
    metrics = Metrics()
    metrics.record_webhook("ok", 0.01)
    await store.close()
    response = await _get(HealthAPI(store, Settings(), metrics=metrics).app(), "/metrics")
    samples = parse(response.text)
    assert value(samples, "pixhook_webhooks_total", outcome="ok") == 1
    assert value(samples, "pixhook_metrics_collect_errors_total") == 1
    assert not [key for key in samples if key[0] in ("pixhook_tasks", "pixhook_jobs")]


def test_exposition_escapes_and_parses() -> None:
    registry = Registry()
    counter = registry.counter("odd_total", "A help text\nwith a \\ backslash.", ("label",))
    tricky = 'a "quoted" \\ back\nslash'
    counter.inc(label=tricky)
    counter.inc(2.5, label="plain")
    histogram = registry.histogram("latency_seconds", "Latency.", (0.1, 1.0))
    for observed in (0.05, 0.1, 0.5, 3.0):
        histogram.observe(observed)
    text = registry.render()
    assert "# TYPE odd_total counter" in text and "# TYPE latency_seconds histogram" in text
    samples = parse(text)
    assert value(samples, "odd_total", label=tricky) == 1
    assert value(samples, "odd_total", label="plain") == 2.5
    assert [value(samples, "latency_seconds_bucket", le=le) for le in ("0.1", "1.0", "+Inf")] \
        == [2, 3, 4]
    assert value(samples, "latency_seconds_sum") == pytest.approx(3.65)
    with pytest.raises(ValueError):
        counter.inc(label="x", other="y")
    with pytest.raises(ValueError):
        Histogram("bad", "Unsorted.", (1.0, 0.5))
