"""Fault injection on the ``/openapi/v2`` routes, driven by ``config.chaos`` (all off by default).

One seeded draw per matching request picks at most one fault, in this order of probability
mass: ``api_5xx_rate`` (HTTP 500/502/503 with a plain-text or HTML body, no envelope), then
``api_429_rate`` (HTTP 429 with ``Retry-After``), then ``api_timeout_rate`` (sleep
``api_timeout_seconds``, then answer normally). ``api_chaos_paths`` holds path prefixes, either
absolute (``/openapi/v2/video``) or relative to ``/openapi/v2`` (``/video/text``).

With ``api_chaos_after_commit`` a faulted POST is handled first (the job is created, charged and
cached under its trace id) and only then does the client get the fault; for a timeout the real
answer is sent after the delay. Without it, a 5xx/429 is answered before the request is
handled, and a timeout sleeps before handling (so the job appears after the delay).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from typing import Final, Literal

from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.simulator.config import ChaosConfig

API_PREFIX: Final = "/openapi/v2"
Fault = Literal["5xx", "429", "timeout"]

_5XX_BODIES: Final = {
    500: ("text/plain", "Internal Server Error"),
    502: ("text/html", ("<html><head><title>502 Bad Gateway</title></head><body><center>"
                        "<h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body>"
                        "</html>")),
    503: ("text/html", ("<html><head><title>503 Service Temporarily Unavailable</title></head>"
                        "<body><center><h1>503 Service Temporarily Unavailable</h1></center>"
                        "</body></html>")),
}


class ChaosDice:
    """The seeded random source for API faults, and a count of the faults it caused."""

    def __init__(self, chaos: ChaosConfig) -> None:
        self.chaos = chaos
        self.rng = random.Random(chaos.seed)
        self.faults: Counter[str] = Counter()

    def reseed(self) -> None:
        self.rng = random.Random(self.chaos.seed)

    def applies(self, path: str) -> bool:
        if not path.startswith(API_PREFIX):
            return False
        prefixes = self.chaos.api_chaos_paths
        relative = path[len(API_PREFIX):]
        return not prefixes or any(path.startswith(p) or relative.startswith(p) for p in prefixes)

    def draw(self) -> Fault | None:
        c = self.chaos
        rates: tuple[tuple[Fault, float], ...] = (
            ("5xx", c.api_5xx_rate), ("429", c.api_429_rate), ("timeout", c.api_timeout_rate),
        )
        if all(rate <= 0 for _, rate in rates):
            return None  # no draw, so the sequence only moves while chaos is on
        point = self.rng.random()
        for fault, rate in rates:
            if point < rate:
                return fault
            point -= rate
        return None

    def failure(self, fault: Fault) -> Response:
        if fault == "429":
            retry_after = str(self.chaos.api_retry_after_seconds)
            return PlainTextResponse("Too Many Requests", status_code=429,
                                     headers={"retry-after": retry_after})
        status = self.rng.choice(sorted(_5XX_BODIES))
        media_type, body = _5XX_BODIES[status]
        return Response(body, status_code=status, media_type=media_type)


class APIChaosMiddleware:
    """ASGI middleware applying :class:`ChaosDice` to the API routes."""

    def __init__(self, app: ASGIApp, dice: ChaosDice) -> None:
        self.app = app
        self.dice = dice

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.dice.applies(scope["path"]):
            await self.app(scope, receive, send)
            return
        fault = self.dice.draw()
        if fault is None:
            await self.app(scope, receive, send)
            return
        self.dice.faults[fault] += 1
        after_commit = self.dice.chaos.api_chaos_after_commit and scope["method"] == "POST"
        delay = self.dice.chaos.api_timeout_seconds
        if fault == "timeout":
            if not after_commit:
                await asyncio.sleep(delay)
                await self.app(scope, receive, send)
                return
            held: list[Message] = []

            async def hold(message: Message) -> None:
                held.append(message)

            await self.app(scope, receive, hold)
            await asyncio.sleep(delay)
            for message in held:
                await send(message)
            return
        if after_commit:
            async def discard(message: Message) -> None:
                return None

            await self.app(scope, receive, discard)
        await self.dice.failure(fault)(scope, receive, send)
