"""What the SDK raises::

    PixhookError
     ├── APIError          pixhook answered with an error (``status``, ``message``, ``field``)
     └── StreamError       the event stream could not be (re)opened
"""

from __future__ import annotations


class PixhookError(Exception):
    """The root of the SDK's errors."""


class APIError(PixhookError):
    """pixhook answered 4xx/5xx: ``status``, its ``message`` and the ``field`` at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        self.status = status
        self.message = message
        self.field = field
        super().__init__(f"{status}: {message}" + (f" ({field})" if field else ""))


class StreamError(PixhookError):
    """The event stream failed for good (an error answer, not a dropped connection)."""
