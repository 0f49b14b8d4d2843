"""Dashboard login: the API token, typed once, buys a session; logging out ends it.

A session is two halves. The server's is a row in the store (:mod:`service.store.sessions`:
the id's hash, when it expires, whether it was revoked, which token it was made with), so
logging out ends it for every replica and a copied cookie stops working. The browser's is the
cookie (:mod:`service.dashboard.session`), which carries the random session id, a CSRF token
and a flash message, signed (itsdangerous) and expiring, but not encrypted: so it carries
nothing derived from the API token either, and holding one gives nothing to guess a token
against offline.

The cookie's signing key is derived from ``PIXHOOK_SECRET_KEY`` per purpose, as media links'
are (:func:`service.media.secret_key`; without it, a random key per process: logins end with
the process and do not work across replicas). Forms carry the CSRF token on top of
``SameSite=Lax``. Failed logins are limited per client address
(:mod:`service.dashboard.ratelimit`).

Only dashboard routes look at the session: ``/api`` keeps its bearer token, and the webhook,
``/media`` and health routes never see a login.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service import media
from service.settings import Settings
from service.store import StorageError, Store

logger = logging.getLogger(__name__)

SESSION_COOKIE: Final = "pixhook_session"
#: How long a login lasts, in seconds (12 hours): the cookie's and the stored session's.
SESSION_MAX_AGE_SECONDS: Final = 12 * 3600
#: One key per purpose, each derived from PIXHOOK_SECRET_KEY, never the secret as is.
_SESSION_PURPOSE: Final = b"pixhook.dashboard.session"
_TOKEN_PURPOSE: Final = b"pixhook.dashboard.token"
#: Where the session id sits in the cookie.
_SESSION_ID: Final = "auth"
_CSRF: Final = "csrf"
_FLASH: Final = "flash"
#: Where :class:`Login` sits in the request's scope (set by the session middleware).
LOGIN_SCOPE_KEY: Final = "pixhook.dashboard.login"

Endpoint = Callable[[Request], Awaitable[Response]]


def _derived_key(settings: Settings, purpose: bytes) -> str:
    key = media.secret_key(settings).encode()
    return hmac.new(key, purpose, hashlib.sha256).hexdigest()


def session_secret(settings: Settings) -> str:
    """The key session cookies are signed with: HMAC(PIXHOOK_SECRET_KEY, purpose)."""
    return _derived_key(settings, _SESSION_PURPOSE)


def token_fingerprint(settings: Settings) -> str:
    """Which API token a session was made with, as stored with it: an HMAC under a key the
    database does not hold, so the stored value gives nothing to guess the token against."""
    key = _derived_key(settings, _TOKEN_PURPOSE).encode()
    return hmac.new(key, settings.api_token.encode(), hashlib.sha256).hexdigest()


def token_matches(settings: Settings, given: str) -> bool:
    """Whether ``given`` is the API token (constant time; an empty token matches nothing)."""
    expected = settings.api_token
    if not expected:
        return False
    return hmac.compare_digest(given.strip().encode(), expected.encode())


@dataclasses.dataclass(frozen=True)
class Login:
    """What the session middleware found out about a request's login."""

    #: The live session's id, or ``None`` when not logged in.
    session_id: str | None = None
    #: Set when the store could not say (the pages answer 503 rather than a login form).
    error: StorageError | None = None


async def resolve_login(session: dict[str, Any], settings: Settings, store: Store) -> Login:
    """Check the cookie's session id against the store. A session that is unknown, expired,
    revoked or made with another API token is dropped from ``session``."""
    session_id = session.get(_SESSION_ID)
    if not isinstance(session_id, str):
        return Login()
    if settings.api_token:
        try:
            live = await store.live_dashboard_session(session_id)
        except StorageError as exc:
            return Login(error=exc)
        if live is not None and hmac.compare_digest(live.token_fingerprint,
                                                    token_fingerprint(settings)):
            return Login(session_id)
    session.pop(_SESSION_ID, None)
    return Login()


def _login(request: Request) -> Login:
    login = request.scope.get(LOGIN_SCOPE_KEY)
    return login if isinstance(login, Login) else Login()


async def log_in(request: Request, settings: Settings, store: Store) -> None:
    """Start a new session (no fixation: a fresh id and CSRF token) for a caller who gave the
    right token; a session the cookie already named is ended."""
    await log_out(request, store)
    session_id, _ = await store.create_dashboard_session(
        ttl_seconds=SESSION_MAX_AGE_SECONDS, token_fingerprint=token_fingerprint(settings))
    request.session[_SESSION_ID] = session_id
    request.session[_CSRF] = secrets.token_urlsafe(32)
    request.scope[LOGIN_SCOPE_KEY] = Login(session_id)


async def log_out(request: Request, store: Store) -> None:
    """End the session in the store (for every replica, and any copy of the cookie), then
    forget it here."""
    session_id = request.session.get(_SESSION_ID)
    if isinstance(session_id, str):
        await store.revoke_dashboard_session(session_id)
    request.session.clear()
    request.scope[LOGIN_SCOPE_KEY] = Login()


def logged_in(request: Request, settings: Settings) -> bool:
    """Whether the request has a live session (as the session middleware found; an empty
    API token refuses everyone)."""
    return bool(settings.api_token) and _login(request).session_id is not None


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
    brings the caller back afterwards. When the store could not check the session, its
    ``StorageError`` is raised for the page's own error handling."""
    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            error = _login(request).error
            if error is not None:
                raise error  # the store could not say: a 503 page, not a login form
            if not logged_in(request, settings):
                return RedirectResponse(login_url(request), status_code=303)
            return await endpoint(request)
        return guarded
    return wrap
