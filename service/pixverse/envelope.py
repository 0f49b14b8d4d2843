"""PixVerse's response envelope: ``{"ErrCode": 0, "ErrMsg": "success", "Resp": {...}}``.

Some answers (an upload moderation reject, HTTP 500) use lower-case keys
``err_code/err_msg/resp``; both are read. JSON integers stay Python ints, so 64-bit ids are
exact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from service.pixverse.errors import APIError, UnknownAPIError, error_for


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form only; dates are ignored)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds)


def unwrap(
    http_status: int,
    body: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    trace_id: str | None = None,
) -> Any:
    """Return ``Resp`` of a successful answer, or raise the matching :class:`APIError`."""
    retry_after = parse_retry_after((headers or {}).get("retry-after"))
    try:
        data = json.loads(body) if body else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        snippet = body[:200].decode("utf-8", "replace")
        if http_status == 200:
            raise UnknownAPIError(None, f"answer is not a PixVerse envelope: {snippet!r}",
                                  http_status=http_status, trace_id=trace_id)
        raise error_for(None, snippet or f"HTTP {http_status}", http_status=http_status,
                        trace_id=trace_id, retry_after=retry_after)
    code = _first(data, "ErrCode", "err_code")
    message = str(_first(data, "ErrMsg", "err_msg") or "")
    if http_status == 200 and code == 0:
        return _first(data, "Resp", "resp")
    if code == 0 or not isinstance(code, int):
        code = None
    raise error_for(code, message or f"HTTP {http_status}", http_status=http_status,
                    trace_id=trace_id, retry_after=retry_after)


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in data:
            return data[key]
    return None


def envelope(resp: Any = None, *, err_code: int = 0, err_msg: str = "success") -> dict[str, Any]:
    """Build an envelope (the simulator's answers)."""
    return {"ErrCode": err_code, "ErrMsg": err_msg, "Resp": resp}


__all__ = ["APIError", "envelope", "parse_retry_after", "unwrap"]
