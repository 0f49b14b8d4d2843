"""``pixhook demo``: the simulator and a client round trip, end to end, on loopback.

It starts the PixVerse simulator and a webhook receiver on free ports, uploads an image,
submits jobs of several kinds (one is meant to fail moderation), receives and verifies the
signed webhooks, chains an extend and a sound effect onto the first video, downloads the
results, and prints a summary. No job status is polled: the summary shows the simulator's
own count of status calls.

Until pixhook's event service exists (issue 3) the receiver here is a minimal verifier.
"""

from __future__ import annotations

import asyncio
import struct
import time
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from service.pixverse import (
    Extend,
    ImageToVideo,
    PixVerseClient,
    SoundEffect,
    TextToVideo,
    SignatureError,
    VideoStatus,
    signature,
)
from service.serving import running_server
from service.simulator import SimulatorConfig, create_app
from service.simulator.config import DEFAULT_API_KEY

#: Seconds each simulated job takes; short so the demo finishes quickly.
DEMO_GENERATION_SECONDS = 1.0
#: Give up waiting for a webhook after this many seconds.
WEBHOOK_WAIT_SECONDS = 30.0


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


class WebhookInbox:
    """Receives PixVerse webhooks, verifies them, and lets callers await a job's outcome."""

    def __init__(self, secret: str) -> None:
        self._secret = secret
        self._outcomes: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.received_at: dict[str, float] = {}
        self.rejected = 0
        self.app = Starlette(routes=[Route("/webhooks/pixverse", self._receive,
                                           methods=["POST"])])

    async def _receive(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        try:
            event = signature.verify(body, request.headers, [self._secret])
        except SignatureError:
            self.rejected += 1
            return PlainTextResponse("bad signature", status_code=401)
        payload = event.payload
        if VideoStatus(int(payload["status"])).is_terminal:
            future = self._future(str(payload["id"]))
            if not future.done():
                self.received_at[str(payload["id"])] = time.monotonic()
                future.set_result(payload)
        return PlainTextResponse("ok")

    def _future(self, video_id: str) -> asyncio.Future[dict[str, Any]]:
        return self._outcomes.setdefault(video_id, asyncio.get_running_loop().create_future())

    async def outcome(self, video_id: int) -> dict[str, Any]:
        return await asyncio.wait_for(self._future(str(video_id)), WEBHOOK_WAIT_SECONDS)


async def run_demo(*, media_dir: str = "media",
                   echo: Callable[[str], None] = print) -> int:
    """Run the demo; return 0 when every job ended as expected."""
    started = time.monotonic()
    config = SimulatorConfig(generation_seconds=DEMO_GENERATION_SECONDS)
    account = config.accounts[DEFAULT_API_KEY]
    inbox = WebhookInbox(account.webhook_secret)
    async with running_server(inbox.app) as receiver_url, \
            running_server(create_app(config)) as sim_url:
        account.webhook_url = f"{receiver_url}/webhooks/pixverse"
        echo(f"simulator  {sim_url}/openapi/v2")
        echo(f"webhooks   {account.webhook_url}")
        async with PixVerseClient(DEFAULT_API_KEY, base_url=f"{sim_url}/openapi/v2") as pixverse, \
                httpx.AsyncClient(timeout=30) as http:
            rows = await _run_jobs(pixverse, inbox, echo)
            downloads = await _download(http, rows, Path(media_dir), echo)
            stats = (await http.get(f"{sim_url}/_sim/stats")).json()
            balance = await pixverse.balance()
    status_calls = _status_calls(stats)
    _summary(rows, downloads, status_calls, balance.total, time.monotonic() - started, echo)
    expected = {"chain: text_to_video": 1, "chain: extend": 1, "chain: sound_effect": 1,
                "image_to_video": 1, "text_to_video (moderated)": 7}
    ok = all(rows[name]["status"] == status for name, status in expected.items())
    return 0 if ok and status_calls == 0 else 1


async def _run_jobs(pixverse: PixVerseClient, inbox: WebhookInbox,
                    echo: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}

    async def track(name: str, submit: Awaitable[Any]) -> dict[str, Any]:
        t0 = time.monotonic()
        submission = await submit
        echo(f"submitted  {name:<28} video_id={submission.video_id}")
        payload = await inbox.outcome(submission.video_id)
        rows[name] = {"video_id": submission.video_id, "status": int(payload["status"]),
                      "url": payload.get("url") or "", "seconds": time.monotonic() - t0}
        echo(f"webhook    {name:<28} status={VideoStatus(rows[name]['status']).name.lower()}")
        return payload

    image = await pixverse.upload_image(tiny_png(), filename="frame.png")
    echo(f"uploaded   frame.png{'':<19} img_id={image.img_id}")

    async def chain() -> None:
        first = await track("chain: text_to_video", pixverse.text_to_video(TextToVideo(
            prompt="a paper lantern drifts over a misty lake at dawn", model="v6",
            duration=5, quality="540p", aspect_ratio="16:9")))
        parent = int(first["id"])
        second = await track("chain: extend", pixverse.extend(Extend(
            source_video_id=parent, prompt="the camera rises above the clouds", model="v6",
            duration=5, quality="540p", seed=7)))
        await track("chain: sound_effect", pixverse.sound_effect(SoundEffect(
            source_video_id=int(second["id"]), sound_effect_content="wind and distant bells")))

    await asyncio.gather(
        chain(),
        track("image_to_video", pixverse.image_to_video(ImageToVideo(
            img_id=image.img_id, prompt="the gradient ripples like water", model="v5",
            duration=5, quality="360p"))),
        track("text_to_video (moderated)", pixverse.text_to_video(TextToVideo(
            prompt="an nsfw scene", model="v5", duration=5, quality="360p",
            aspect_ratio="1:1"))),
    )
    return rows


async def _download(http: httpx.AsyncClient, rows: dict[str, dict[str, Any]], media: Path,
                    echo: Callable[[str], None]) -> list[Path]:
    media.mkdir(parents=True, exist_ok=True)
    files = []
    for row in rows.values():
        if row["status"] != VideoStatus.SUCCEEDED or not row["url"]:
            continue
        target = media / f"{row['video_id']}.mp4"
        partial = target.with_suffix(".part")
        async with http.stream("GET", row["url"]) as response:
            response.raise_for_status()
            with partial.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
        partial.replace(target)
        files.append(target)
        echo(f"downloaded {target} ({target.stat().st_size} bytes)")
    return files


def _status_calls(stats: dict[str, Any]) -> int:
    """Status polls the simulator counted for the demo's key."""
    return int(stats["keys"].get(DEFAULT_API_KEY, {}).get("status_calls", 0))


def _summary(rows: dict[str, dict[str, Any]], downloads: list[Path], status_calls: int,
             credits_left: int, elapsed: float, echo: Callable[[str], None]) -> None:
    echo("")
    echo(f"{'job':<28} {'video_id':<20} {'state':<18} {'seconds':>7}")
    for name, row in rows.items():
        state = VideoStatus(row["status"]).name.lower()
        echo(f"{name:<28} {row['video_id']:<20} {state:<18} {row['seconds']:>7.2f}")
    echo("")
    echo(f"files downloaded   {len(downloads)}")
    echo(f"status polls made  {status_calls} (webhooks only)")
    echo(f"credits left       {credits_left}")
    echo(f"finished in        {elapsed:.1f} s")
