"""The dashboard's login at its HTTP edge: rate limit, server-side logout, the cookie's key,
and ``Secure`` behind proxies, each over real uvicorn."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from service.dashboard import session
from service.dashboard.auth import SESSION_COOKIE, session_secret
from service.dashboard.ratelimit import MAX_FAILED_LOGINS, WINDOW_SECONDS
from service.dashboard.session import SessionCookie
from tests.core.conftest import FakeClock
from tests.dashboard.conftest import (
    API_TOKEN,
    Browser,
    Stack,
    dashboard_app,
    dashboard_service,
    login_limiter,
)
from tests.support.servers import running_server


async def _post_login(browser: Browser, token: str,
                      headers: dict[str, str] | None = None) -> httpx.Response:
    form = await browser.client.get("/login")
    return await browser.client.post("/login", headers=headers, data={
        "token": token, "next": "/", "csrf": browser.csrf(form.text)})


def _use_cookie(client: httpx.AsyncClient, value: str) -> None:
    """Send exactly this session cookie from now on (as a copy of it would be sent)."""
    client.cookies.clear()
    client.cookies.set(SESSION_COOKIE, value)


def _cookie_flags(response: httpx.Response) -> set[str]:
    """The attributes of the session cookie a response sets (``secure``, ``httponly``...)."""
    [cookie] = [value for value in response.headers.get_list("set-cookie")
                if value.startswith(f"{SESSION_COOKIE}=")]
    return {part.strip().lower() for part in cookie.split(";")[1:]}


# -- rate limit ---------------------------------------------------------------------------------


async def test_the_eleventh_failed_login_in_a_minute_is_429_until_the_window_passes(
        stack: Stack) -> None:
    async with dashboard_service(stack, run_background=False) as browser:
        clock = FakeClock()
        login_limiter(browser.app).clock = clock
        for attempt in range(MAX_FAILED_LOGINS):
            # Untrusted, X-Forwarded-For is the client's to forge: it must not spread the count.
            wrong = await _post_login(browser, "guess",
                                      headers={"X-Forwarded-For": f"198.51.100.{attempt}"})
            assert wrong.status_code == 401, attempt
            clock.advance(1.0)

        # Even the right token waits: a guess that happened to be right would be no better.
        limited = await _post_login(browser, API_TOKEN,
                                    headers={"X-Forwarded-For": "203.0.113.99"})
        assert limited.status_code == 429 and "Too many failed logins" in limited.text
        retry_after = int(limited.headers["retry-after"])
        assert retry_after == WINDOW_SECONDS - MAX_FAILED_LOGINS
        assert (await browser.client.get("/")).status_code == 303

        clock.advance(retry_after)  # the oldest failure has left the window
        again = await _post_login(browser, API_TOKEN)
        assert again.status_code == 303 and again.headers["location"] == "/"
        assert (await browser.client.get("/")).status_code == 200


async def test_behind_a_trusted_proxy_the_limit_is_per_forwarded_address(stack: Stack) -> None:
    async with dashboard_service(stack, run_background=False,
                                 trust_proxy_headers=True) as browser:
        login_limiter(browser.app).clock = FakeClock()
        # The proxy appends the peer it saw; what the client put before that is ignored.
        guesser = {"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}
        for _ in range(MAX_FAILED_LOGINS):
            assert (await _post_login(browser, "guess", headers=guesser)).status_code == 401
        assert (await _post_login(browser, "guess", headers=guesser)).status_code == 429
        assert (await _post_login(browser, API_TOKEN, headers={
            "X-Forwarded-For": "203.0.113.7, 198.51.100.9"})).status_code == 303


# -- logout ends the session server-side ----------------------------------------------------------


@contextlib.asynccontextmanager
async def _replica(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A second web process on the same database and secret, with a cookie jar of its own."""
    app = dashboard_app(stack, run_background=False)
    async with running_server(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        yield client


async def test_logout_ends_the_session_for_a_copied_cookie_on_every_replica(
        stack: Stack) -> None:
    async with dashboard_service(stack, run_background=False) as browser, \
            _replica(stack) as other:
        await browser.login()
        copied = browser.client.cookies[SESSION_COOKIE]
        _use_cookie(other, copied)
        assert (await other.get("/")).status_code == 200  # sessions are shared by replicas

        page = await browser.client.get("/")
        logout = await browser.client.post("/logout", data={"csrf": browser.csrf(page.text)})
        assert logout.status_code == 303

        for client in (other, browser.client):
            _use_cookie(client, copied)
            refused = await client.get("/jobs/job_x")
            assert refused.status_code == 303
            assert refused.headers["location"].startswith("/login?next=")
            _use_cookie(client, copied)
            assert (await client.get("/events")).status_code == 401


# -- the cookie's key ---------------------------------------------------------------------------


async def test_the_cookie_holds_a_random_session_id_and_nothing_from_the_token(
        stack: Stack) -> None:
    seen = []
    for _ in range(2):
        async with dashboard_service(stack, run_background=False) as browser:
            await browser.login()
            value = browser.client.cookies[SESSION_COOKIE]
            payload = SessionCookie(session_secret(stack.settings)).loads(value)
            assert payload is not None and set(payload) == {"auth", "csrf"}
            seen.append(payload["auth"])
    # The same token twice gives two unrelated ids: nothing in them to test a guess against.
    assert seen[0] != seen[1]
    assert not any(API_TOKEN in value or hashlib.sha256(API_TOKEN.encode()).hexdigest() in value
                   for value in seen)


async def test_cookies_signed_with_a_token_derived_or_guessed_key_are_refused(
        stack: Stack) -> None:
    async with dashboard_service(stack, run_background=False) as browser:
        await browser.login()
        real = SessionCookie(session_secret(stack.settings))
        payload = real.loads(browser.client.cookies[SESSION_COOKIE])
        assert payload is not None

        async def page_with(cookie: str) -> int:
            _use_cookie(browser.client, cookie)
            return (await browser.client.get("/")).status_code

        token_key = hmac.new(API_TOKEN.encode(), b"pixhook.dashboard.session",
                             hashlib.sha256).hexdigest()
        for key in (token_key, API_TOKEN, "", "not-the-secret"):
            assert await page_with(SessionCookie(key).dumps(payload)) == 303, key
        # The same live session id, signed with the real key, is a login: only the key differs.
        assert await page_with(real.dumps(payload)) == 200


async def test_without_a_secret_key_logins_use_a_per_process_key_and_say_so(
        stack: Stack, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session, "_warned_random_key", False)
    caplog.set_level(logging.WARNING, logger=session.__name__)
    settings = dataclasses.replace(stack.settings, secret_key="")
    assert session_secret(settings) != session_secret(stack.settings)
    async with dashboard_service(stack, run_background=False, secret_key="") as browser:
        assert (await browser.login()).status_code == 303
        assert (await browser.client.get("/")).status_code == 200
        # Another app in this process (the same key): no second warning.
        session.dashboard_middleware(settings, browser.app.state.services.store)
    warnings = [r.getMessage() for r in caplog.records if "PIXHOOK_SECRET_KEY" in r.getMessage()]
    assert len(warnings) == 1 and "do not work on other replicas" in warnings[0]


# -- Secure -------------------------------------------------------------------------------------


async def test_secure_only_for_https_through_a_trusted_proxy(stack: Stack) -> None:
    https = {"X-Forwarded-Proto": "https"}
    async with dashboard_service(stack, run_background=False) as browser:
        plain = _cookie_flags(await browser.client.get("/login"))
        assert {"httponly", "samesite=lax"} <= plain and "secure" not in plain
        # Not trusted: the header is anyone's to send, and must change nothing.
        assert "secure" not in _cookie_flags(
            await _post_login(browser, API_TOKEN, headers=https))
    async with dashboard_service(stack, run_background=False,
                                 trust_proxy_headers=True) as browser:
        assert "secure" not in _cookie_flags(await browser.client.get("/login"))
        login = _cookie_flags(await _post_login(browser, API_TOKEN, headers=https))
        assert {"secure", "httponly", "samesite=lax"} <= login
        for proto in ("http", "https, http"):  # the last value is our proxy's
            browser.client.cookies.clear()
            assert "secure" not in _cookie_flags(await browser.client.get(
                "/login", headers={"X-Forwarded-Proto": proto})), proto
