"""Failed dashboard logins, counted per client address: past the limit, logins wait.

The count lives in this process's memory: a restart forgets it, and each web replica counts
on its own (N replicas behind a balancer allow up to N times the limit). That is enough to
make guessing the API token slow, and costs no database write per failed login. A window
slides: an address that failed ``max_failures`` times within ``window_seconds`` waits until
its oldest failure in the window is that old, then gets one more try per freed slot.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from typing import Final

#: Failed logins an address may make in a window.
MAX_FAILED_LOGINS: Final = 10
#: The window, in seconds.
WINDOW_SECONDS: Final = 60.0
#: Most addresses remembered; past this the stalest are forgotten (bounded memory).
MAX_ADDRESSES: Final = 10_000


class LoginLimiter:
    """Counts failed logins per address; :meth:`retry_after` says when one may try again."""

    def __init__(self, *, max_failures: int = MAX_FAILED_LOGINS,
                 window_seconds: float = WINDOW_SECONDS, max_addresses: int = MAX_ADDRESSES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self.max_addresses = max_addresses
        #: Read on every call, so tests can swap it for a settable one.
        self.clock = clock
        # Newest failure last within each deque; addresses in order of their last failure.
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, address: str) -> int | None:
        """Whole seconds until ``address`` may try again, or ``None`` if it may now."""
        failures = self._failures.get(address)
        if failures is None or len(failures) < self.max_failures:
            return None
        wait = failures[0] + self.window_seconds - self.clock()
        return max(1, math.ceil(wait)) if wait > 0 else None

    def failed(self, address: str) -> None:
        """Count a failed login from ``address``."""
        now = self.clock()
        failures = self._failures.pop(address, None) or deque(maxlen=self.max_failures)
        failures.append(now)
        self._failures[address] = failures  # re-inserted: the most recent is last
        self._forget_stale(now)

    def succeeded(self, address: str) -> None:
        """A good login clears the address's count."""
        self._failures.pop(address, None)

    def _forget_stale(self, now: float) -> None:
        oldest_kept = now - self.window_seconds
        while self._failures:
            address, failures = next(iter(self._failures.items()))
            if failures[-1] > oldest_kept and len(self._failures) <= self.max_addresses:
                return
            del self._failures[address]
