"""Reading a request body with a size cap and a deadline: one reader for every endpoint.

uvicorn gives an app no time limit on a request body: a client that sends its headers and a
few bytes, then stalls, holds its connection (and a file descriptor) for as long as it
likes, and a few hundred such clients starve everyone else. :func:`read_body` bounds the
whole read instead::

    try:
        body = await read_body(request, max_bytes=65536, deadline=settings.body_timeout)
    except bodies.BodyTooLargeError:      # 413
    except bodies.BodyTimeoutError:       # 408, and close the connection (CLOSE_HEADERS)
    except bodies.ClientDisconnectedError:  # nobody is left to answer; log one debug line

The errors (drawn in :mod:`service.exceptions`)::

    BodyError
    ├── BodyTooLargeError        over ``max_bytes`` (declared or actually sent)
    ├── BodyTimeoutError         not all there within ``deadline`` seconds
    └── ClientDisconnectedError  the client hung up mid-body (Starlette's ClientDisconnect)
"""

from __future__ import annotations

import asyncio
from typing import Final

from starlette.requests import Request
from starlette.types import Receive

from service.exceptions import ServiceError

#: Headers for an answer that gives up on a body: the rest of it may still be on its way, so
#: the connection cannot carry another request (uvicorn closes it after the answer).
CLOSE_HEADERS: Final = {"Connection": "close"}


class BodyError(ServiceError):
    """A request body could not be read whole."""


class BodyTooLargeError(BodyError):
    """The body is (or says it is) over the size cap; ``max_bytes`` holds the cap."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        super().__init__(f"body over {max_bytes} bytes")


class BodyTimeoutError(BodyError):
    """The body did not arrive whole within ``deadline`` seconds."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        super().__init__(f"body not received within {deadline:g} s")


class ClientDisconnectedError(BodyError):
    """The client hung up before sending the whole body."""

    def __init__(self) -> None:
        super().__init__("client disconnected before sending the whole body")


async def read_body(request: Request, *, max_bytes: int, deadline: float | None) -> bytes:
    """The whole body of ``request``, read within ``deadline`` seconds (``None`` or 0: no
    limit) and at most ``max_bytes`` long (:func:`read_asgi_body`)."""
    return await read_asgi_body(request.receive, request.headers.get("content-length", ""),
                                max_bytes=max_bytes, deadline=deadline)


async def read_asgi_body(receive: Receive, content_length: str, *, max_bytes: int,
                         deadline: float | None) -> bytes:
    """The whole body of an ASGI request, from its ``receive`` and its ``Content-Length``
    header (``""`` if it has none), read within ``deadline`` seconds (``None`` or 0: no
    limit) and at most ``max_bytes`` long.

    A ``Content-Length`` over the cap is refused before anything is read; a body that grows
    past it (a lying or absent ``Content-Length``) as soon as it does. Raises the
    :class:`BodyError` subclasses above and nothing else from the network.
    """
    # Length first: int() refuses thousands of digits with a ValueError of its own.
    if content_length.isascii() and content_length.isdigit() and (
            len(content_length) > 18 or int(content_length) > max_bytes):
        raise BodyTooLargeError(max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(deadline or None):
            while True:
                message = await receive()
                if message["type"] != "http.request":  # http.disconnect
                    raise ClientDisconnectedError
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > max_bytes:
                    raise BodyTooLargeError(max_bytes)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise BodyTimeoutError(deadline or 0.0) from None
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
