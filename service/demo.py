"""``pixhook demo``: the whole pixhook service against the simulator, end to end, on loopback.

It starts the PixVerse simulator, local Slack and Discord stand-ins and pixhook itself (web,
worker and handlers in one process, a fresh SQLite database in a temporary directory) on free
loopback ports; uploads an image; submits jobs of several kinds through pixhook's own ``/api``
(a three-step chain, an image-to-video, one meant to fail moderation); shows each state change
as it happens; replays the history through the event stream; and ends with a summary: jobs per
state, files downloaded into ``./media``, Slack and Discord messages (Discord's stand-in answers
its first post with 429 and ``Retry-After``, as Discord does, so one retry shows too), status
polls made (zero: webhooks only) and webhook-to-handler latency.

Everything it starts is stopped on the way out, Ctrl-C included.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import statistics
import struct
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import httpx

from pixhook_sdk import AsyncPixhook
from service.app import create_app
from service.chat_standins import StandIn
from service.pixverse import PixVerseClient
from service.serving import free_port, running_server
from service.settings import Settings
from service.simulator import SimulatorConfig
from service.simulator import create_app as create_simulator
from service.simulator.config import DEFAULT_API_KEY
from service.slack_receiver import SlackReceiver

#: Seconds each simulated job takes; short so the demo finishes quickly.
DEMO_GENERATION_SECONDS: Final = 1.0
#: Give up on the demo's jobs after this many seconds.
DEMO_TIMEOUT_SECONDS: Final = 60.0
TERMINAL: Final = frozenset({"succeeded", "failed", "moderation_failed", "rejected", "deleted"})
SLACK_PATH: Final = "/services/T0DEMO/B0DEMO/demo"
DISCORD_PATH: Final = "/api/webhooks/42/discord-token"

T2V: Final = {"model": "v6", "duration": 5, "quality": "540p", "aspect_ratio": "16:9"}
#: The demo's jobs: (name, kind, params, follow-up steps, the final state expected).
JOBS: Final[list[tuple[str, str, dict[str, Any], list[dict[str, Any]], str]]] = [
    ("chain", "text_to_video",
     {**T2V, "prompt": "a paper lantern drifts over a misty lake at dawn"},
     [{"kind": "extend", "params": {"prompt": "the camera rises above the clouds",
                                    "model": "v6", "duration": 5, "quality": "540p",
                                    "seed": 7}},
      {"kind": "sound_effect", "params": {"sound_effect_content": "wind and distant bells"}}],
     "succeeded"),
    ("moderated", "text_to_video", {**T2V, "prompt": "an nsfw scene"}, [],
     "moderation_failed"),
]


def tiny_png(width: int = 64, height: int = 36) -> bytes:
    """A valid RGB PNG (a gradient), made without any imaging library."""
    rows = b"".join(
        b"\x00" + bytes(v for x in range(width) for v in (x * 4 % 256, y * 7 % 256, 128))
        for y in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


@dataclasses.dataclass
class DemoApi:
    """pixhook's ``/api``, as any integration would call it."""

    http: httpx.AsyncClient
    base: str
    token: str

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, f"{self.base}{path}", headers={
            "Authorization": f"Bearer {self.token}"}, **kwargs)
        response.raise_for_status()
        return response.json()

    async def submit(self, kind: str, params: dict[str, Any],
                     then: list[dict[str, Any]]) -> dict[str, Any]:
        job: dict[str, Any] = await self.call("POST", "/api/jobs", json={
            "kind": kind, "params": params, "then": then, "labels": {"source": "demo"}})
        return job

    async def jobs(self) -> list[dict[str, Any]]:
        page: dict[str, Any] = await self.call("GET", "/api/jobs", params={"limit": "200"})
        return list(page["jobs"])

    async def tasks(self) -> list[dict[str, Any]]:
        page: dict[str, Any] = await self.call("GET", "/api/tasks")
        return list(page["tasks"])


async def run_demo(*, media_dir: str = "media", echo: Callable[[str], None] = print) -> int:
    """Run the demo; return 0 when every job ended as expected with no status polls."""
    started = time.monotonic()
    simulator = SimulatorConfig(generation_seconds=DEMO_GENERATION_SECONDS)
    account = simulator.accounts[DEFAULT_API_KEY]
    slack = SlackReceiver(path=SLACK_PATH)
    chat = StandIn(discord_token=DISCORD_PATH.rsplit("/", 1)[1])
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="pixhook-demo-") as workdir:
        async with running_server(create_simulator(simulator)) as sim_url, \
                running_server(slack.app) as slack_url, \
                running_server(chat.app) as chat_url:
            settings = Settings(
                database_url=f"sqlite:///{Path(workdir) / 'pixhook.db'}",
                pixverse_base_url=f"{sim_url}/openapi/v2",
                pixverse_api_key=DEFAULT_API_KEY,
                pixverse_webhook_secret=account.webhook_secret,
                api_token=secrets.token_urlsafe(24),
                secret_key=secrets.token_urlsafe(32),
                public_url=f"http://127.0.0.1:{port}",
                media_dir=str(Path(media_dir).resolve()),
                download_allow_private=True,  # the simulator serves its videos on loopback
                slack_webhook_url=f"{slack_url}{SLACK_PATH}",
                handlers=(*Settings.handlers, "discord"),
                handler_options={"discord": {"webhook_url": f"{chat_url}{DISCORD_PATH}"}},
                webhook_grace=30.0,
            )
            app = create_app(settings)
            async with running_server(app, port=port) as pixhook_url, \
                    httpx.AsyncClient(timeout=30) as http:
                account.webhook_url = f"{pixhook_url}/webhooks/pixverse"
                echo(f"{'simulator':<18} {sim_url}/openapi/v2")
                echo(f"{'pixhook':<18} {pixhook_url}  (webhooks at /webhooks/pixverse)")
                echo(f"{'slack':<18} {slack_url}{SLACK_PATH}  (a local stand-in)")
                echo(f"{'discord':<18} {chat_url}{DISCORD_PATH}  (a local stand-in)")
                echo("")
                api = DemoApi(http, pixhook_url, settings.api_token)
                await _run_jobs(api, settings, echo)
                tasks = await _settle(api)
                jobs = await api.jobs()  # again: downloads record their files on the jobs
                stats = (await http.get(f"{sim_url}/_sim/stats")).json()
                delays = list(app.state.services.runner.start_delays)
                streamed = await _stream_events(api, pixhook_url, settings.api_token, echo)
    status_calls = int(stats["keys"].get(DEFAULT_API_KEY, {}).get("status_calls", 0))
    # /api shows a signed link, never the server's path; the demo's files are on this machine.
    media = Path(media_dir).resolve()
    downloads = {job["id"]: next((str(path) for path in media.glob(f"{job['id']}.*")), "?")
                 for job in jobs if job.get("media_sha256")}
    discord = chat.of("discord")
    attached = sum(bool(message["_files"]) for message in discord)
    messages = {"slack": f"{len(slack.received)}",
                "discord": f"{len(discord)} ({attached} with the MP4 attached; "
                           f"{chat.requests - len(discord)} answered 429 and retried)"}
    _summary(jobs, tasks, downloads, messages, status_calls, delays,
             time.monotonic() - started, echo)
    expected = {"succeeded": 4, "moderation_failed": 1}
    by_state = _count(job["state"] for job in jobs)
    ok = (by_state == expected and status_calls == 0 and len(downloads) == 4
          and all(task["state"] == "succeeded" for task in tasks) and streamed
          and len(discord) == len(jobs) and not chat.problems)
    if not ok:
        echo("the demo did not end as expected (see above)")
    return 0 if ok else 1


async def _run_jobs(api: DemoApi, settings: Settings,
                    echo: Callable[[str], None]) -> list[dict[str, Any]]:
    """Submit the demo's jobs and print every state change until all have finished."""
    async with PixVerseClient(settings.pixverse_api_key,
                              base_url=settings.pixverse_base_url) as pixverse:
        image = await pixverse.upload_image(tiny_png(), filename="frame.png")
    echo(f"{'uploaded':<18} frame.png -> img_id {image.img_id}")
    specs = [*JOBS, ("image", "image_to_video",
                     {"img_id": image.img_id, "prompt": "the gradient ripples like water",
                      "model": "v5", "duration": 5, "quality": "360p"}, [], "succeeded")]
    for name, kind, params, then, _ in specs:
        job = await api.submit(kind, params, then)
        steps = " -> ".join([kind, *(step["kind"] for step in then)])
        echo(f"{'submitted':<18} {job['id']}  {steps}  ({name})")
    seen: dict[str, str] = {}
    deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        jobs = await api.jobs()
        for job in sorted(jobs, key=lambda j: j["created_at"]):
            if seen.get(job["id"]) != job["state"]:
                seen[job["id"]] = job["state"]
                echo(f"{job['state']:<18} {job['id']}  {job['kind']}")
        # Done once five jobs (three chained, two alone) have finished.
        if len(jobs) == 5 and all(job["state"] in TERMINAL for job in jobs):
            return jobs
        await asyncio.sleep(0.1)
    raise TimeoutError(f"the demo's jobs did not finish in {DEMO_TIMEOUT_SECONDS:.0f} s")


async def _stream_events(api: DemoApi, url: str, token: str,
                         echo: Callable[[str], None]) -> bool:
    """Replay the whole history through the event stream (the SDK, server-sent events) and
    check it against the log's JSON pages: the same events, in order, each once."""
    paged: list[str] = []
    after = 0
    while True:
        page = await api.call("GET", "/api/events", params={"after": str(after),
                                                             "limit": "1000"})
        paged += [doc["id"] for doc in page["events"]]
        if not page["events"]:
            break
        after = page["last_id"]
    streamed: list[str] = []
    async with AsyncPixhook(url, token) as pixhook:
        async with asyncio.timeout(DEMO_TIMEOUT_SECONDS):
            async for event in pixhook.events(after=0):
                streamed.append(event.id)
                if event.sequence >= after:
                    break
    runs = sum(event_id.startswith("task_run:") for event_id in streamed)
    echo(f"{'event stream':<18} {len(streamed)} events ({len(streamed) - runs} transitions, "
         f"{runs} task runs) over GET /api/events, in order, once each")
    return streamed == paged


async def _settle(api: DemoApi) -> list[dict[str, Any]]:
    """Wait for every handler task to finish (downloads, Slack, follow-ups)."""
    deadline = time.monotonic() + DEMO_TIMEOUT_SECONDS
    while True:
        tasks = await api.tasks()
        if all(task["state"] in ("succeeded", "dead") for task in tasks):
            return tasks
        if time.monotonic() > deadline:
            raise TimeoutError("handler tasks did not finish")
        await asyncio.sleep(0.1)


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def _summary(jobs: list[dict[str, Any]], tasks: list[dict[str, Any]], downloads: dict[str, str],
             messages: dict[str, str], status_calls: int, delays: list[float], elapsed: float,
             echo: Callable[[str], None]) -> None:
    echo("")
    echo(f"{'job':<31} {'kind':<15} {'state':<18} {'file'}")
    for job in sorted(jobs, key=lambda j: j["created_at"]):
        echo(f"{job['id']:<31} {job['kind']:<15} {job['state']:<18} "
             f"{downloads.get(job['id'], '-')}")
    echo("")
    states = ", ".join(f"{n} {s}" for s, n in sorted(_count(j["state"] for j in jobs).items()))
    handler_runs = ", ".join(f"{n} {h}" for h, n in sorted(_count(t["handler"]
                                                                   for t in tasks).items()))
    echo(f"jobs               {len(jobs)}: {states}")
    echo(f"handler tasks      {len(tasks)}: {handler_runs}")
    echo(f"files downloaded   {len(downloads)}")
    for service, count in messages.items():
        echo(f"{service + ' messages':<18} {count}")
    echo(f"status polls made  {status_calls} (webhooks only)")
    if delays:
        p50 = statistics.median(delays) * 1000
        worst = max(delays) * 1000
        echo(f"webhook->handler   p50 {p50:.1f} ms, max {worst:.1f} ms ({len(delays)} tasks)")
    echo(f"finished in        {elapsed:.1f} s")
