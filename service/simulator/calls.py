"""What every ``/openapi/v2`` call shares: authentication, the envelope, business errors.

A handler raises :class:`Reject` for a business error; :func:`api_endpoint` turns it into
PixVerse's envelope with HTTP 200 (or the lower-case HTTP 500 variant for upload moderation),
and counts it per key. Authentication comes first (``API-KEY``, ErrCode 10002), then the
``Ai-trace-id`` header (400011). Header names match case-insensitively.

A moderation refusal is the body PixVerse sends, word for word: ``{"ErrCode": 500063,
"ErrMsg": "The input content does not comply with platform specifications, please re-enter",
"Resp": null}``. What the simulator found goes in an ``X-Simulator-Detail`` header instead (no
such header comes from PixVerse); every other error's message says it after a colon.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.pixverse.envelope import envelope
from service.pixverse.errors import ERROR_MESSAGES
from service.simulator.state import SimulatorState

#: Codes whose ErrMsg is PixVerse's own text, nothing added (REFERENCE.md §14).
VERBATIM_CODES: Final = frozenset({500063})
DETAIL_HEADER: Final = "X-Simulator-Detail"


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
        if self.code in VERBATIM_CODES:
            return base
        return f"{base}: {self.detail}" if self.detail else base

    def response(self) -> Response:
        headers = {}
        if self.detail and self.code in VERBATIM_CODES:
            # ASCII only in a header: anything else (a newline too) is escaped.
            headers[DETAIL_HEADER] = self.detail.encode("unicode_escape").decode("ascii")
        if self.lowercase_http_500:
            return JSONResponse({"err_code": self.code, "err_msg": self.message, "resp": ""},
                                status_code=500, headers=headers)
        return JSONResponse(envelope(None, err_code=self.code, err_msg=self.message),
                            headers=headers)


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


def int_param(params: Mapping[str, Any], name: str, *, default: int | None = None,
              low: int = 1, high: int = 1000) -> int:
    """An integer query or body parameter: missing without a default 400011, not an
    integer 400013, out of range 400017."""
    value = params.get(name)
    if value is None or value == "":
        if default is None:
            raise Reject(400011, f"{name} is required")
        return default
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise Reject(400013, f"{name}: {value!r} must be an integer") from exc
    if not low <= number <= high:
        raise Reject(400017, f"{name}: {number} is outside {low}..{high}")
    return number
