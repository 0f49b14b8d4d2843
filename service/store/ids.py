"""Job ids: ``job_`` plus a ULID (26 Crockford base32 characters).

A ULID starts with the creation time in milliseconds, so ids sort by creation and cursor
pagination on the id lists jobs in time order. Within one process ids are strictly increasing,
even within one millisecond (the random part is incremented, as the ULID spec suggests).
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Final

JOB_ID_PREFIX: Final = "job_"

_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BITS: Final = 80
_RANDOM_MAX: Final = (1 << _RANDOM_BITS) - 1

_lock = threading.Lock()
_last_ms = -1
_last_random = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_ulid() -> str:
    """A 26-character ULID, increasing within this process."""
    global _last_ms, _last_random
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms and _last_random < _RANDOM_MAX:
            # Same millisecond (or the clock stepped back): keep order by counting up.
            now_ms, random_part = _last_ms, _last_random + 1
        else:
            random_part = secrets.randbits(_RANDOM_BITS)
        _last_ms, _last_random = now_ms, random_part
    return _encode(now_ms, 10) + _encode(random_part, 16)


def new_job_id() -> str:
    return JOB_ID_PREFIX + new_ulid()
