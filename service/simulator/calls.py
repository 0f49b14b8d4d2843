"""What every ``/openapi/v2`` call shares: authentication, the envelope, business errors.

A handler raises :class:`Reject` for a business error; :func:`api_endpoint` turns it into
PixVerse's envelope with HTTP 200 (or the lower-case HTTP 500 variant for upload moderation),
and counts it per key. Authentication comes first (``API-KEY``, ErrCode 10002), then the
``Ai-trace-id`` header (400011). Header names match case-insensitively.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.pixverse.envelope import envelope
from service.pixverse.errors import ERROR_MESSAGES
from service.simulator.state import SimulatorState


class Reject(Exception):
    """A business error: ErrCode ``code`` with a message naming what was wrong."""

    def __init__(self, code: int, detail: str = "", *, lowercase_http_500: bool = False) -> None:
        self.code = code
        self.detail = detail
        #: Answer HTTP 500 with ``{"err_code", "err_msg", "resp": ""}`` (upload moderation).
        self.lowercase_http_500 = lowercase_http_500
        super().__init__(self.message)

    @property
    def message(self) -> str:
        base = ERROR_MESSAGES.get(self.code, "error")
        return f"{base}: {self.detail}" if self.detail else base

    def response(self) -> Response:
        if self.lowercase_http_500:
            return JSONResponse({"err_code": self.code, "err_msg": self.message, "resp": ""},
                                status_code=500)
        return JSONResponse(envelope(None, err_code=self.code, err_msg=self.message))


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who is calling: the account key and this request's trace id."""

    api_key: str
    trace_id: str
    #: Where the caller reached the simulator, without a trailing slash.
    base_url: str


Handler = Callable[[Request, SimulatorState, Caller], Awaitable[Response]]


def state_of(request: Request) -> SimulatorState:
    state: SimulatorState = request.app.state.simulator
    return state


def authenticate(request: Request, state: SimulatorState) -> Caller:
    api_key = request.headers.get("api-key")
    if not api_key or state.account(api_key) is None:
        raise Reject(10002)
    trace_id = (request.headers.get("ai-trace-id") or "").strip()
    if not trace_id:
        raise Reject(400011, "header Ai-trace-id is required")
    return Caller(api_key, trace_id, str(request.base_url).rstrip("/"))


def api_endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a handler with authentication, job-clock catch-up and error answers."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        state = state_of(request)
        state.advance()
        caller: Caller | None = None
        try:
            caller = authenticate(request, state)
            return await handler(request, state, caller)
        except Reject as reject:
            if caller is not None:
                state.key_stats(caller.api_key).errors[reject.code] += 1
            return reject.response()

    return endpoint


def ok(resp: Any) -> dict[str, Any]:
    """A success envelope (a dict, so it can be cached and replayed verbatim)."""
    return envelope(resp)


async def read_json_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object, or 400013."""
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Reject(400013, f"body is not valid JSON ({exc})") from exc
    if not isinstance(body, dict):
        raise Reject(400013, "body must be a JSON object")
    return body
