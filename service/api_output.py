"""What ``/api`` shows: no secret and no server path, in JSON that always encodes.

* :func:`masked_url`: a URL without ``user:password@``, with the values of secret-looking query
  parameters (``token``, ``api_key``, ``sig``...) and any fragment shown as ``***``. A
  ``callback_url`` often carries the receiver's credential; the job's owner gave it, but
  responses travel further (logs, dashboards, support tickets) than the request did.
* :class:`APIResponse`: JSON that a row stored before ``/api`` checked its input (a lone
  surrogate, an ``Infinity``) cannot break: such a value goes out as a JSON ``\\u`` escape (or
  ``null``), instead of a 500 that would hide every job listed with it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final
from urllib.parse import unquote, urlsplit, urlunsplit

from starlette.responses import JSONResponse

#: A query parameter whose name matches this has its value shown as ``***``.
SECRET_NAME: Final = re.compile(r"token|secret|key|sig|password|passwd|pwd|auth|credential",
                                re.IGNORECASE)
MASK: Final = "***"


def masked_url(url: str) -> str:
    """``url`` fit to show: no userinfo, secret-looking query values and the fragment masked.
    The rest (scheme, host, port, path, other parameters) is left as written."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    query = "&".join(_masked_pair(pair) for pair in parts.query.split("&")) \
        if parts.query else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query,
                                     fragment=MASK if parts.fragment else ""))


def _masked_pair(pair: str) -> str:
    name, equals, _ = pair.partition("=")
    return f"{name}={MASK}" if equals and SECRET_NAME.search(unquote(name)) else pair


class APIResponse(JSONResponse):
    """A :class:`JSONResponse` that never fails to encode (see the module docstring)."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except ValueError:  # UnicodeEncodeError, or a float JSON has no word for
            return json.dumps(_finite(content), ensure_ascii=True, allow_nan=False,
                              separators=(",", ":")).encode("ascii")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
