"""Who is asking, and over what: the client's address and whether it used HTTPS.

Both come from the socket (the peer's address, the scheme uvicorn saw) unless
``PIXHOOK_TRUST_PROXY_HEADERS`` says a reverse proxy in front sets ``X-Forwarded-For`` and
``X-Forwarded-Proto``. Then the last value of each counts: the one our proxy wrote, since a
proxy appends to what the client sent and anything before it is the client's to forge.

``pixhook serve`` and ``pixhook web`` start uvicorn with its own proxy-header handling off
(it would otherwise rewrite the scheme and the peer from these headers for connections from
127.0.0.1), so this setting alone decides.
"""

from __future__ import annotations

from starlette.types import Scope

from service.settings import Settings

#: The address of a request whose peer is not known (a test transport, a Unix socket).
UNKNOWN_ADDRESS = "unknown"


def _last_value(scope: Scope, name: bytes) -> str | None:
    """The last comma-separated item of a header, across all its occurrences."""
    items = [item.strip() for key, value in scope["headers"] if key == name
             for item in value.decode("latin-1").split(",")]
    items = [item for item in items if item]
    return items[-1] if items else None


def is_https(scope: Scope, settings: Settings) -> bool:
    """Whether the request reached us over HTTPS (at our proxy, if we trust it)."""
    if scope.get("scheme") == "https":
        return True
    if settings.trust_proxy_headers:
        return (_last_value(scope, b"x-forwarded-proto") or "").lower() == "https"
    return False


def client_address(scope: Scope, settings: Settings) -> str:
    """The address the request came from, for per-client limits."""
    if settings.trust_proxy_headers:
        forwarded = _last_value(scope, b"x-forwarded-for")
        if forwarded:
            return forwarded
    client = scope.get("client")
    return str(client[0]) if client else UNKNOWN_ADDRESS
