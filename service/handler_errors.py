"""How a handler's task run ends, as exceptions: the ``HandlerError`` branch of the tree drawn in
:mod:`service.exceptions`.

Handlers import these from :mod:`service.handler_api`; they live in their own module so that
the helpers handler_api re-exports (:mod:`service.outbound`, say) can raise them too without an
import cycle.
"""

from __future__ import annotations

from service.exceptions import ServiceError


class HandlerError(ServiceError):
    """Raised by a handler to tell the worker what to do with its task."""


class Retry(HandlerError):
    """Run the task again after ``after`` seconds (e.g. a 429's ``Retry-After``)."""

    def __init__(self, after: float, reason: str = "") -> None:
        self.after = max(0.0, float(after))
        self.reason = reason
        super().__init__(reason or f"retry in {self.after:g} s")


class PermanentError(HandlerError):
    """The task cannot succeed by running again; it is marked dead at once."""


class TransientError(HandlerError):
    """Failed for now; the worker retries with exponential backoff (and jitter) until
    ``PIXHOOK_TASK_MAX_ATTEMPTS``, then the task is dead.

    The same as letting any other exception out; raising this says so on purpose, and a
    handler's own "try again later" errors derive from it so they share one root.
    """
