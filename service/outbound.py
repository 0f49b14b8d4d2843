"""Calls handlers make to other hosts: where they may go, how long they may take, how much of
the answer they read. Shared by the download, forward and Slack handlers (through
:mod:`service.handler_api`).

**Where.** A URL that came from outside (a webhook's result URL, a job's ``callback_url``) must
not reach pixhook's own network (server-side request forgery). :class:`AddressGuard` refuses

* anything but ``http``/``https``, and URLs httpx cannot parse;
* user info (``https://user:pw@host/``): httpx would send it as an ``Authorization`` header of
  the URL's author's choosing, and ``https://trusted.example@127.0.0.1/`` reads as a host it
  is not;
* hosts that resolve to any non-public address (:func:`is_public`): loopback, private,
  link-local, unique-local, carrier-grade NAT, unspecified, multicast, reserved, and the
  IPv4-mapped IPv6 forms of those. The check is made on the resolved addresses, through the
  resolver the connection uses, so ``localhost``, ``2130706433``, ``0x7f000001``, ``127.1`` and
  a DNS name pointing at 127.0.0.1 are all caught as what they are.

Each handler has its own opt-in for private addresses (``PIXHOOK_DOWNLOAD_ALLOW_PRIVATE``,
``PIXHOOK_FORWARD_ALLOW_PRIVATE``): the local simulator and the tests live on loopback. Only the
address check is lifted; the scheme and user-info checks always hold. A caller that follows
redirects must check every hop (the download handler does); the forward handler follows none.

The name is resolved before httpx resolves it again to connect, so a DNS server that answers
differently the second time (DNS rebinding) could still steer the connection; a host allow-list
(the download handler's) or a filtering egress proxy closes that gap.

**How long.** httpx's timeouts are per phase: its read timeout is the longest silence, so a
peer that sends a byte every few seconds holds the call (and the worker's task slot) for as long
as it likes. Handlers put the whole exchange under ``asyncio.timeout(PIXHOOK_OUTBOUND_TIMEOUT)``
(the download handler, its connection and headers: the body of a video is the task timeout's).

**How much.** :func:`read_capped` reads at most :data:`MAX_ANSWER_BYTES` of an answer, as sent
(no decompression: a small gzip body can expand to gigabytes; ask for ``accept-encoding:
identity``), and :func:`excerpt` makes the few characters of it quoted in an error (which
``/api/tasks`` and the dashboard show) safe to store: printable, one line, short.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Final

import httpx

from service.handler_errors import PermanentError, TransientError

#: Most bytes of an answer a handler reads (an error page, Slack's short code); the rest is
#: never read, and the connection is closed.
MAX_ANSWER_BYTES: Final = 64 * 1024
#: Characters of an answer quoted in an error message.
EXCERPT_CHARS: Final = 80
#: Headers that make the answer's bytes the text itself, so a capped read is a capped size.
IDENTITY: Final = {"accept-encoding": "identity"}


def is_public(address: str) -> bool:
    """Whether an address is one a public host may have: not private, loopback, link-local,
    reserved, multicast, unspecified or otherwise non-global (like 100.64.0.0/10)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback, whatever older Pythons say
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved
                or ip.is_multicast or ip.is_unspecified or not ip.is_global)


def redact(url: httpx.URL) -> str:
    """``scheme://host[:port]/path``: query strings may carry signed tokens, so never log
    them (nor user info, which httpx's ``netloc`` already leaves out)."""
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}"


def parse_url(text: str, what: str = "the URL") -> httpx.URL:
    """``text`` as httpx will read it (the host checked must be the host connected to);
    ``PermanentError`` if httpx cannot parse it."""
    try:
        return httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise PermanentError(f"{what} is not a valid URL: {exc}") from None


async def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, by the resolver asyncio (and so httpx) connects
    with. A module function so tests can stand in for DNS."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class AddressGuard:
    """Refuses URLs a handler must not call (see the module docstring).

    :param allow_private: skip the address check (the scheme and user-info checks stay).
    :param setting: the opt-in's name, quoted in the refusal so an operator knows the switch.
    :param action: what was refused, for messages (``"download"``, ``"POST to"``).
    :param unresolved: raised when the name does not resolve (a transient failure).
    """

    def __init__(self, *, allow_private: bool, setting: str, action: str,
                 unresolved: type[TransientError] = TransientError) -> None:
        self.allow_private = allow_private
        self.setting = setting
        self.action = action
        self.unresolved = unresolved

    async def check(self, url: httpx.URL) -> None:
        """Raise ``PermanentError`` unless ``url`` may be called (both checks below)."""
        self.check_form(url)
        await self.check_addresses(url)

    def check_form(self, url: httpx.URL) -> None:
        """Scheme, host and user info: what needs no DNS."""
        if url.scheme not in ("http", "https"):
            raise PermanentError(f"refusing to {self.action} {redact(url)}: not http(s)")
        if not url.host:
            raise PermanentError(f"refusing to {self.action} {redact(url)}: no host")
        if url.userinfo:
            raise PermanentError(f"refusing to {self.action} {redact(url)}: the URL carries "
                                 "user info (user:password@), which would be sent as an "
                                 "Authorization header")

    async def check_addresses(self, url: httpx.URL) -> None:
        """Every address the host resolves to must be public, unless private ones are
        allowed."""
        if self.allow_private:
            return
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            # The ASCII (IDNA) form httpx connects to: Python's own IDNA codec could encode a
            # non-ASCII name differently and so resolve another host.
            addresses = await resolve(url.raw_host.decode("ascii"), port)
        except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
            raise self.unresolved(f"cannot resolve {url.host!r}: {exc}") from None
        for address in addresses:
            if not is_public(address):
                raise PermanentError(
                    f"refusing to {self.action} {redact(url)}: {url.host!r} resolves to the "
                    f"non-public address {address} ({self.setting} is off)")


async def read_capped(response: httpx.Response, limit: int = MAX_ANSWER_BYTES) -> bytes:
    """At most ``limit`` bytes of a streamed response's body, as sent; the rest stays unread
    (closing the response then drops the connection)."""
    data = bytearray()
    async for chunk in response.aiter_raw():
        data += chunk[:limit - len(data)]
        if len(data) >= limit:
            break
    return bytes(data)


def excerpt(answer: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """At most ``limit`` characters of an answer, fit to quote in an error message: decoded
    leniently, every non-printable character (controls, terminal escapes, line breaks,
    bidirectional overrides) turned into a space, runs of spaces collapsed."""
    text = answer.decode("utf-8", "replace") if isinstance(answer, bytes) else answer
    flat = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    return flat if len(flat) <= limit else flat[:limit - 1].rstrip() + "…"
