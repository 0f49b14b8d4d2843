"""Read server-sent events in tests: each message as a dict of its fields, comments kept."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx


async def messages(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Each message of a text/event-stream answer: ``{"id", "event", "data"}`` for events
    (``data`` decoded as JSON), ``{"comment": text}`` for comment lines, ``{"retry": ms}``."""
    fields: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line == "":
            if fields:
                if "data" in fields:
                    fields["data"] = json.loads(fields["data"])
                yield fields
            fields = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
