"""A local stand-in for a Slack incoming webhook, for tests and the demo.

It answers the way Slack's ``hooks.slack.com/services/...`` endpoints do: ``200 ok`` for a
JSON message with ``text`` or ``blocks``, ``400 invalid_payload`` / ``400 no_text`` for bad
ones, ``404 no_service`` for an unknown webhook path, and, when told to, a run of refusals such
as ``429 rate_limited`` with ``Retry-After``. Serve it with ``running_server(receiver.app)`` and
point the handler at ``base_url + receiver.path``.

Used by the tests and by ``pixhook demo``, which shows the messages it gets.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import time
from typing import Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

#: What Slack says with each refusal status (its answers are short codes, not JSON).
SLACK_ANSWERS: Final = {
    400: "invalid_payload",
    403: "invalid_token",
    404: "no_service",
    410: "channel_is_archived",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}


@dataclasses.dataclass(frozen=True)
class Refusal:
    """One queued non-200 answer."""

    status: int
    body: str
    #: Seconds for the ``Retry-After`` header, or ``None`` to send none.
    retry_after: float | None


class SlackReceiver:
    """Records the messages POSTed to it and answers like Slack.

    :param path: the one webhook path that exists (others get ``404 no_service``, as an
        unknown or revoked webhook does); ``None`` accepts every path.
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        #: Accepted messages, in arrival order.
        self.received: list[dict[str, Any]] = []
        #: Every POST, accepted or not.
        self.requests = 0
        #: POSTs answered with anything but 200.
        self.refused = 0
        self._refusals: collections.deque[Refusal] = collections.deque()
        self.app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["POST"])])

    def refuse_next(self, count: int = 1, *, status: int = 429, body: str | None = None,
                    retry_after: float | None = None) -> None:
        """Answer the next ``count`` POSTs with ``status`` (and Slack's answer for it).
        A 429 carries ``Retry-After: 1`` unless ``retry_after`` says otherwise."""
        if retry_after is None and status == 429:
            retry_after = 1
        refusal = Refusal(status, body if body is not None else SLACK_ANSWERS.get(status, ""),
                          retry_after)
        self._refusals.extend([refusal] * count)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """The messages once at least ``count`` have arrived; ``TimeoutError`` after
        ``timeout`` seconds. Polls, so it works whichever thread or loop serves the app."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.received)} of {count} Slack messages arrived")
            await asyncio.sleep(0.01)
        return list(self.received)

    async def _endpoint(self, request: Request) -> Response:
        self.requests += 1
        if self._refusals:
            return self._refuse(self._refusals.popleft())
        if self.path is not None and request.url.path != self.path:
            return self._refuse(Refusal(404, SLACK_ANSWERS[404], None))
        try:
            message = json.loads(await request.body())
        except ValueError:
            return self._refuse(Refusal(400, SLACK_ANSWERS[400], None))
        if not isinstance(message, dict):
            return self._refuse(Refusal(400, SLACK_ANSWERS[400], None))
        if not message.get("text") and not message.get("blocks"):
            return self._refuse(Refusal(400, "no_text", None))
        self.received.append(message)
        return PlainTextResponse("ok")

    def _refuse(self, refusal: Refusal) -> Response:
        self.refused += 1
        headers = ({} if refusal.retry_after is None
                   else {"retry-after": f"{refusal.retry_after:g}"})
        return PlainTextResponse(refusal.body, status_code=refusal.status, headers=headers)
