"""Dashboard login: the API token, typed once, buys a signed session cookie.

The cookie (Starlette's ``SessionMiddleware``, itsdangerous underneath) is signed, not
encrypted: anyone holding it can read it. So it never carries the token, only a fingerprint
of it (an HMAC keyed by the token), which also logs everyone out when the token changes.
Forms carry a per-session CSRF token on top of ``SameSite=Lax``.

Only dashboard routes look at the session: ``/api`` keeps its bearer token, and the webhook,
``/media`` and health routes never see a login.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import urlencode, urlsplit

from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service import media
from service.settings import Settings

SESSION_COOKIE: Final = "pixhook_session"
#: How long a login lasts, in seconds (12 hours).
SESSION_MAX_AGE_SECONDS: Final = 12 * 3600
#: One key per purpose: the session key is derived from PIXHOOK_SECRET_KEY, never reused as is.
_SESSION_SALT: Final = b"pixhook.dashboard.session"
_FINGERPRINT_SALT: Final = b"pixhook.dashboard.login"
_AUTH: Final = "auth"
_CSRF: Final = "csrf"
_FLASH: Final = "flash"

Endpoint = Callable[[Request], Awaitable[Response]]


def session_secret(settings: Settings) -> str:
    """The key sessions are signed with, derived from :func:`service.media.secret_key`."""
    key = media.secret_key(settings).encode()
    return hmac.new(key, _SESSION_SALT, hashlib.sha256).hexdigest()


def dashboard_middleware(settings: Settings) -> list[Middleware]:
    """The middleware the dashboard needs: signed session cookies."""
    return [Middleware(SessionMiddleware, secret_key=session_secret(settings),
                       session_cookie=SESSION_COOKIE, max_age=SESSION_MAX_AGE_SECONDS,
                       same_site="lax", https_only=settings.public_url.startswith("https://"))]


def _fingerprint(token: str) -> str:
    return hmac.new(token.encode(), _FINGERPRINT_SALT, hashlib.sha256).hexdigest()


def token_matches(settings: Settings, given: str) -> bool:
    """Whether ``given`` is the API token (constant time; an empty token matches nothing)."""
    expected = settings.api_token
    if not expected:
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


def log_in(request: Request, settings: Settings) -> None:
    """Start a fresh session (no fixation) for a caller who gave the right token."""
    request.session.clear()
    request.session[_AUTH] = _fingerprint(settings.api_token)
    request.session[_CSRF] = secrets.token_urlsafe(32)


def log_out(request: Request) -> None:
    request.session.clear()


def logged_in(request: Request, settings: Settings) -> bool:
    if not settings.api_token:
        return False
    given = request.session.get(_AUTH)
    return isinstance(given, str) and hmac.compare_digest(
        given.encode(), _fingerprint(settings.api_token).encode())


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use), for hidden form fields."""
    token = request.session.get(_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[_CSRF] = token
    return token


def csrf_ok(request: Request, given: object) -> bool:
    expected = request.session.get(_CSRF)
    return (isinstance(expected, str) and isinstance(given, str)
            and hmac.compare_digest(given.encode(), expected.encode()))


def flash(request: Request, message: str) -> None:
    """Keep a one-line message for the next page this session renders."""
    request.session[_FLASH] = message


def pop_flash(request: Request) -> str | None:
    message = request.session.pop(_FLASH, None)
    return message if isinstance(message, str) else None


def safe_next(value: str | None) -> str:
    """A local path to return to after login; anything else (``//evil``, ``https://...``,
    backslashes browsers treat as slashes) becomes ``/``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or any(ord(c) < 32 for c in value):
        return "/"
    return value


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return "/login?" + urlencode({"next": target})


def login_required(settings: Settings) -> Callable[[Endpoint], Endpoint]:
    """Wrap a page endpoint: without a login, redirect (303) to the login page, which
    brings the caller back afterwards."""
    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            if not logged_in(request, settings):
                return RedirectResponse(login_url(request), status_code=303)
            return await endpoint(request)
        return guarded
    return wrap
