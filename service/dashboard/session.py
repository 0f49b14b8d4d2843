"""The dashboard's session cookie: signed, expiring, ``Secure`` whenever the request was HTTPS.

:class:`SessionCookieMiddleware` gives each dashboard request ``request.session`` (a dict, as
Starlette's ``SessionMiddleware`` does) read from the ``pixhook_session`` cookie, and asks the
store whether the session id in it is still a login (:func:`service.dashboard.auth.
resolve_login`). Starlette's middleware is not used because it fixes ``Secure`` when it is
built; here it is decided per request (:func:`service.dashboard.forwarded.is_https`), so a
deployment reached over HTTPS through a trusted proxy gets ``Secure`` cookies while plain HTTP
on loopback still works. The cookie is always ``HttpOnly`` and ``SameSite=Lax``, and is only
written when the session changed.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any, Final

from itsdangerous import BadSignature, TimestampSigner
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.dashboard import auth, forwarded
from service.settings import Settings
from service.store import Store

logger = logging.getLogger(__name__)

_SALT: Final = "pixhook.dashboard.session"
_CLEARED: Final = "null; expires=Thu, 01 Jan 1970 00:00:00 GMT"
_warned_random_key = False


class SessionCookie:
    """The cookie's value: the session as base64 JSON, signed with a timestamp."""

    def __init__(self, secret: str, *,
                 max_age_seconds: int = auth.SESSION_MAX_AGE_SECONDS) -> None:
        self._signer = TimestampSigner(secret, salt=_SALT)
        self._max_age_seconds = max_age_seconds

    def dumps(self, session: dict[str, Any]) -> str:
        return self._signer.sign(base64.b64encode(json.dumps(session).encode())).decode()

    def loads(self, value: str) -> dict[str, Any] | None:
        """The session a cookie holds, or ``None`` if it is forged, altered or too old."""
        try:
            data = self._signer.unsign(value.encode(), max_age=self._max_age_seconds)
            session = json.loads(base64.b64decode(data))
        except (BadSignature, binascii.Error, ValueError):
            return None
        return session if isinstance(session, dict) else None


class SessionCookieMiddleware:
    """``request.session`` from the signed cookie, and the login it names (see the module)."""

    def __init__(self, app: ASGIApp, *, settings: Settings, store: Store) -> None:
        self.app = app
        self._settings = settings
        self._store = store
        self._cookie = SessionCookie(auth.session_secret(settings))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = HTTPConnection(scope).cookies.get(auth.SESSION_COOKIE)
        loaded = None if raw is None else self._cookie.loads(raw)
        session: dict[str, Any] = dict(loaded or {})
        scope["session"] = session
        scope[auth.LOGIN_SCOPE_KEY] = await auth.resolve_login(session, self._settings,
                                                               self._store)
        flags = "; path=/; httponly; samesite=lax"
        if self._settings.public_url.startswith("https://") or forwarded.is_https(
                scope, self._settings):
            flags += "; secure"

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                current = scope["session"]
                value = None
                if current and current != loaded:
                    value = (f"{self._cookie.dumps(current)}"
                             f"; Max-Age={auth.SESSION_MAX_AGE_SECONDS}")
                elif not current and raw is not None:
                    value = _CLEARED
                if value is not None:
                    MutableHeaders(scope=message).append(
                        "Set-Cookie", f"{auth.SESSION_COOKIE}={value}{flags}")
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def dashboard_middleware(settings: Settings, store: Store) -> list[Middleware]:
    """The middleware the dashboard's routes need: the session cookie and its login."""
    global _warned_random_key
    if not settings.secret_key and not _warned_random_key:
        _warned_random_key = True
        logger.warning("PIXHOOK_SECRET_KEY is not set: dashboard logins (and media links) are "
                       "signed with a random key made by this process, so they end when it "
                       "stops and do not work on other replicas",
                       extra={"action": "dashboard_random_key"})
    return [Middleware(SessionCookieMiddleware, settings=settings, store=store)]
