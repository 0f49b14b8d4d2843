"""Peers for the tests of handlers' outgoing calls: a listener on both loopback families that
records every request, a stand-in for DNS, and answers that are huge or trickle.

DNS is stood in for on both sides of a call, so the guard and the connection agree: the guard's
lookup (``service.outbound.resolve``) through :func:`fake_dns`, and the connection through
:class:`PeerTransport`, which sends a request for a fake name to the loopback port it names,
as ``/etc/hosts`` would. The transport also counts the answer bytes the handler pulled.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from service import outbound

MiB = 1024 * 1024


@dataclasses.dataclass
class Hit:
    host: str
    path: str
    headers: dict[str, str]


@dataclasses.dataclass
class Listener:
    """A receiver on 127.0.0.1 and [::1] at one port; ``hits`` is every request it got."""

    port: int = 0
    hits: list[Hit] = dataclasses.field(default_factory=list)

    async def endpoint(self, request: Request) -> Response:
        self.hits.append(Hit(request.client.host if request.client else "", request.url.path,
                             dict(request.headers)))
        return Response(status_code=204)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.endpoint, methods=["GET", "POST"])])


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handling (pytest owns the process's signals)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _dual_stack_sockets() -> list[socket.socket]:
    """Sockets on 127.0.0.1 and ::1 with the same free port (retried if ::1 has it taken)."""
    for _ in range(20):
        v4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        v4.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        v4.bind(("127.0.0.1", 0))
        v6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            v6.bind(("::1", v4.getsockname()[1]))
        except OSError:
            v4.close()
            v6.close()
            continue
        return [v4, v6]
    raise RuntimeError("no port free on both 127.0.0.1 and ::1")


@contextlib.asynccontextmanager
async def dual_stack(app: Any) -> AsyncIterator[int]:
    """Serve ``app`` under uvicorn on 127.0.0.1 and [::1]; yield the port."""
    sockets = _dual_stack_sockets()
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    task = asyncio.create_task(server.serve(sockets=sockets))
    deadline = time.monotonic() + 10
    while not server.started:
        assert not task.done() and time.monotonic() < deadline, "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        for sock in sockets:
            sock.close()


@contextlib.contextmanager
def fake_dns(monkeypatch: pytest.MonkeyPatch,
             names: Mapping[str, list[str]]) -> Iterator[None]:
    """Make the guard's lookup answer ``names`` (name -> addresses); other names resolve as
    usual."""
    real = outbound.resolve

    async def resolve(host: str, port: int) -> list[str]:
        return list(names[host]) if host in names else await real(host, port)

    with monkeypatch.context() as patch:
        patch.setattr(outbound, "resolve", resolve)
        yield


class _Counted(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, transport: PeerTransport) -> None:
        self._inner = inner
        self._transport = transport

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            self._transport.received += len(chunk)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class PeerTransport(httpx.AsyncBaseTransport):
    """httpx's own transport, but a request for a host in ``routes`` goes to 127.0.0.1 at the
    port given (the Host header keeps the name); ``received`` counts answer bytes pulled."""

    def __init__(self, routes: Mapping[str, int] | None = None) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.routes = dict(routes or {})
        self.received = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        port = self.routes.get(request.url.host)
        if port is not None:
            request.url = request.url.copy_with(host="127.0.0.1", port=port)
        response = await self._inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_Counted(response.stream, self),
                              extensions=response.extensions)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Disconnect:
    """Watches an ASGI request for the client going away (uvicorn's ``send`` then drops
    data silently, so a sender must ask)."""

    def __init__(self, receive: Any) -> None:
        self.gone = asyncio.Event()
        self._task = asyncio.create_task(self._watch(receive))

    async def _watch(self, receive: Any) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.gone.set()

    def close(self) -> None:
        self._task.cancel()


class Huge:
    """Answers ``status`` with ``size`` bytes, streamed with Content-Length announced."""

    def __init__(self, size: int, status: int = 500) -> None:
        self.size = size
        self.status = status

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        client = _Disconnect(receive)
        try:
            await send({"type": "http.response.start", "status": self.status,
                        "headers": [(b"content-length", str(self.size).encode()),
                                    (b"content-type", b"text/plain")]})
            chunk, sent = b"x" * (64 * 1024), 0
            while sent < self.size and not client.gone.is_set():
                piece = chunk[:self.size - sent]
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                sent += len(piece)
            await send({"type": "http.response.body", "body": b""})
        finally:
            client.close()


class Trickle:
    """Answers ``status`` (after ``headers_after`` seconds), then a byte every ``interval``
    seconds until the client goes away; ``open`` counts requests still being answered,
    ``served`` all of them."""

    def __init__(self, status: int = 500, interval: float = 1.0,
                 headers_after: float = 0.0) -> None:
        self.status = status
        self.interval = interval
        self.headers_after = headers_after
        self.open = 0
        self.served = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.open += 1
        self.served += 1
        client = _Disconnect(receive)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.gone.wait(), self.headers_after)
            if client.gone.is_set():
                return
            await send({"type": "http.response.start", "status": self.status,
                        "headers": [(b"content-type", b"text/plain")]})
            while not client.gone.is_set():
                await send({"type": "http.response.body", "body": b".", "more_body": True})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(client.gone.wait(), self.interval)
        finally:
            client.close()
            self.open -= 1
