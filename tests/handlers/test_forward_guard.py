"""The forward handler's callback_url reaches no private address (server-side request forgery).

Each form of a loopback address is aimed at a real listener on 127.0.0.1 and [::1] (one port,
both families) that records every request: the task must be dead and the listener untouched.
Names are stood in for by :mod:`tests.handlers.peers` (the guard's lookup and the connection
agree, as with ``/etc/hosts``). Without the guard, every form but the redirect reaches it.
"""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from handlers.forward import DeliveryError, ForwardHandler
from service import outbound
from service.handler_api import PermanentError
from service.lifecycle import JobState
from tests.handlers.conftest import Harness
from tests.handlers.peers import Listener, PeerTransport, fake_dns
from tests.handlers.test_forward import DONE, SECRET
from tests.support.servers import running_server

#: A global address (example.com's, once) the fake DNS gives "public" names.
PUBLIC = "93.184.215.14"

#: (id, callback_url with {port}); every one is a way of writing "this machine".
FORMS: list[tuple[str, str]] = [
    ("dotted", "http://127.0.0.1:{port}/hook"),
    ("decimal", "http://2130706433:{port}/hook"),
    ("hex", "http://0x7f000001:{port}/hook"),
    ("octal", "http://0177.0.0.1:{port}/hook"),
    ("short", "http://127.1:{port}/hook"),
    ("unspecified", "http://0.0.0.0:{port}/hook"),
    ("localhost", "http://localhost:{port}/hook"),
    ("LOCALHOST", "http://LOCALHOST:{port}/hook"),
    ("ipv6-loopback", "http://[::1]:{port}/hook"),
    ("ipv6-unspecified", "http://[::]:{port}/hook"),
    ("ipv4-mapped", "http://[::ffff:127.0.0.1]:{port}/hook"),
    ("ipv4-mapped-long", "http://[0:0:0:0:0:ffff:7f00:1]:{port}/hook"),
    ("userinfo", "http://hook-user:hook-password@127.0.0.1:{port}/hook"),
    ("userinfo-lookalike", "http://hooks.example.com@127.0.0.1:{port}/hook"),
    ("own-api", "http://127.0.0.1:{port}/api/jobs?limit=1"),
    ("dns-to-loopback", "http://callback.example:{port}/hook"),
    ("dns-public-and-loopback", "http://mixed.example:{port}/hook"),
]


@dataclasses.dataclass
class Redirector:
    """A receiver on a "public" name that redirects every POST to ``to``."""

    to: str = ""
    hits: int = 0

    async def endpoint(self, request: Request) -> Response:
        self.hits += 1
        return RedirectResponse(self.to, status_code=307)


@pytest.fixture
async def redirector() -> AsyncIterator[tuple[Redirector, int]]:
    server = Redirector()
    app = Starlette(routes=[Route("/go", server.endpoint, methods=["POST"])])
    async with running_server(app) as url:
        port = httpx.URL(url).port
        assert port is not None
        yield server, port


async def _forward(harness: Harness, url: str, transport: PeerTransport, *,
                   allow_private: bool = False) -> None:
    settings = dataclasses.replace(harness.settings, forward_secret=SECRET,
                                   forward_allow_private=allow_private)
    job, transition, task = await harness.transition("forward", JobState.SUCCEEDED,
                                                     payload=DONE, callback_url=url)
    async with httpx.AsyncClient(transport=transport, timeout=5) as http:
        context = dataclasses.replace(harness.context(task, settings=settings), http=http)
        await ForwardHandler(settings, {}).run(job, transition, context)


@pytest.mark.parametrize("form", [url for _, url in FORMS], ids=[name for name, _ in FORMS])
async def test_no_form_of_this_machine_is_reached(harness: Harness, listener: Listener,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  form: str) -> None:
    url = form.format(port=listener.port)
    names = {"callback.example": ["127.0.0.1"], "mixed.example": [PUBLIC, "127.0.0.1"]}
    transport = PeerTransport({name: listener.port for name in names})
    with fake_dns(monkeypatch, names), pytest.raises(PermanentError) as caught:
        await _forward(harness, url, transport)
    assert listener.hits == []
    message = str(caught.value)
    assert "non-public address" in message or "user info" in message \
        or "not a valid URL" in message, message
    assert "hook-password" not in message and "limit=1" not in message


async def test_a_redirect_from_a_public_host_to_loopback_is_not_followed(
        harness: Harness, listener: Listener, redirector: tuple[Redirector, int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    server, port = redirector
    server.to = f"http://127.0.0.1:{listener.port}/hook"
    transport = PeerTransport({"redirector.example": port})
    with fake_dns(monkeypatch, {"redirector.example": [PUBLIC]}), \
            pytest.raises(DeliveryError, match=r"^HTTP 307 from .*redirects are not followed"):
        await _forward(harness, f"http://redirector.example:{port}/go", transport)
    assert server.hits == 1  # the public host was called; what it pointed at was not
    assert listener.hits == []


async def test_userinfo_is_refused_even_where_private_addresses_are_allowed(
        harness: Harness, listener: Listener) -> None:
    url = f"http://hook-user:hook-password@127.0.0.1:{listener.port}/hook"
    with pytest.raises(PermanentError, match="user info") as caught:
        await _forward(harness, url, PeerTransport(), allow_private=True)
    assert listener.hits == []
    assert "hook-password" not in str(caught.value)


async def test_the_opt_in_lets_loopback_through(harness: Harness, listener: Listener) -> None:
    await _forward(harness, f"http://[::1]:{listener.port}/hook", PeerTransport(),
                   allow_private=True)
    await _forward(harness, f"http://localhost:{listener.port}/hook", PeerTransport(),
                   allow_private=True)
    assert [hit.path for hit in listener.hits] == ["/hook", "/hook"]
    assert not any("authorization" in hit.headers for hit in listener.hits)


async def test_a_public_name_is_called(harness: Harness, listener: Listener,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    transport = PeerTransport({"hooks.example": listener.port})
    with fake_dns(monkeypatch, {"hooks.example": [PUBLIC, "2606:4700:4700::1111"]}):
        await _forward(harness, f"http://hooks.example:{listener.port}/hook", transport)
    [hit] = listener.hits
    assert hit.path == "/hook" and hit.headers["host"] == f"hooks.example:{listener.port}"


async def test_a_name_that_does_not_resolve_is_retried(harness: Harness,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_such_name(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(outbound, "resolve", no_such_name)
    with pytest.raises(DeliveryError, match="cannot resolve 'nowhere.example'") as caught:
        await _forward(harness, "http://nowhere.example/hook", PeerTransport())
    assert not isinstance(caught.value, PermanentError)
