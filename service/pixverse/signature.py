"""PixVerse webhook signatures (REFERENCE.md section 7.3).

``Webhook-Signature = base64(HMAC-SHA256(secret, f"{timestamp}\\n{nonce}\\n{canonical}"))`` where
``canonical`` is the JSON body's top-level pairs encoded like Go's ``url.Values.Encode()``: keys
sorted, values query-escaped (space as ``+``). Values are rendered the way Go prints them:
booleans lower-case, numbers in plain decimal, strings raw.

Undocumented corners (REFERENCE.md section 14, "signature corners"). The canonical form
renders ``null`` as the empty string and a whole float (``10.0``) as Go does (``10``), with
keys sorted. :func:`verify` tries that form first; only if it fails does it try the other
plausible spellings, one HMAC and one constant-time compare each: ``null`` as ``null``, whole
floats as ``10.0``, and keys in the body's own order. Nested objects and arrays are refused,
since PixVerse's documented payload has none and no rendering for them is known. A lone UTF-16
surrogate in a string (``"\\ud800"``) is signed as U+FFFD, as Go's JSON decoder reads it.

Unauthenticated input never raises anything but :class:`SignatureError` or
:class:`MalformedPayloadError`: a timestamp of 400 digits, a body nested 20,000 deep or a lone
surrogate are refused like any other junk (the receiver answers 401 or 400, never 500).
"""

from __future__ import annotations

import base64
import decimal
import hashlib
import hmac
import json
import math
import re
import secrets
import string
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote_plus

from service.pixverse.errors import MalformedPayloadError, SignatureError, StaleTimestampError

TIMESTAMP_HEADER: Final = "Webhook-Timestamp"
NONCE_HEADER: Final = "Webhook-Nonce"
SIGNATURE_HEADER: Final = "Webhook-Signature"
TRACE_HEADER: Final = "Ai-Trace-Id"

NONCE_ALPHABET: Final = string.ascii_letters + string.digits
NONCE_LENGTH: Final = 32
DEFAULT_TOLERANCE_SECONDS: Final = 300
#: Most digits a ``Webhook-Timestamp`` may have: Unix seconds need 10 until the year 2286; a
#: longer one would overflow the float comparison with the clock.
TIMESTAMP_MAX_DIGITS: Final = 18


def _render(key: str, value: Any, null_as: str = "", point_on_whole: bool = False) -> str:
    if value is None:
        return null_as
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise MalformedPayloadError(f"field {key!r} is not a finite number")
        # Go's strconv.FormatFloat(v, 'f', -1, 64): shortest round-trip, no exponent; 10.0 -> "10".
        text = repr(value)
        if "e" in text or "E" in text:
            # Positional digits of the shortest repr: format(value, "f") would pad to six
            # decimals (1e20 -> "...000.000000") or round them away (1.5e-07 -> "0.000000").
            text = format(decimal.Decimal(text), "f")
        if point_on_whole:
            return text if "." in text else f"{text}.0"
        return text[:-2] if text.endswith(".0") else text
    raise MalformedPayloadError(
        f"field {key!r} is nested; PixVerse signatures cover flat payloads only"
    )


#: What Go's ``url.QueryEscape`` leaves alone; such strings (ids, numbers, most keys) skip
#: ``quote_plus``, which is the slow part of checking a webhook.
_UNRESERVED: Final = re.compile(r"[A-Za-z0-9_.~-]*")


#: ``str.translate`` table doing ``quote_plus(safe="")`` for ASCII text: one C pass instead of
#: urllib's per-byte Python loop (URLs in payloads are the usual case).
_ASCII_ESCAPES: Final = {
    code: "+" if code == 0x20 else f"%{code:02X}"
    for code in range(128) if not _UNRESERVED.fullmatch(chr(code))
}


#: UTF-16 surrogates: JSON can spell a lone one (``"\\ud800"``), UTF-8 cannot encode it.
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _escape(text: str) -> str:
    if _UNRESERVED.fullmatch(text):
        return text
    if text.isascii():
        return text.translate(_ASCII_ESCAPES)
    try:
        return quote_plus(text, safe="")
    except UnicodeEncodeError:  # a lone surrogate: Go's JSON decoder reads it as U+FFFD
        return quote_plus(_SURROGATE.sub("\ufffd", text), safe="")


def canonical_query(payload: Mapping[str, Any], *, sort_keys: bool = True, null_as: str = "",
                    point_on_whole: bool = False) -> str:
    """The url-encoded string PixVerse signs for a payload.

    The defaults give the canonical form; ``sort_keys=False`` keeps the payload's order,
    ``null_as`` spells ``null`` and ``point_on_whole`` writes whole floats as ``10.0``.
    """
    keys: Iterable[str] = sorted(payload) if sort_keys else payload
    return "&".join([
        f"{_escape(key)}={_escape(_render(key, payload[key], null_as, point_on_whole))}"
        for key in keys
    ])


def _other_forms(payload: Mapping[str, Any], canonical: str) -> Iterator[str]:
    """Every other plausible signed form of ``payload``, each once, and none equal to
    ``canonical``; only the corners the payload has are varied (most payloads have none)."""
    values = payload.values()
    nulls = ("", "null") if any(value is None for value in values) else ("",)
    points = (False, True) if any(isinstance(value, float) and value.is_integer()
                                  for value in values) else (False,)
    seen = {canonical}
    for sort_keys in (True, False):
        for null_as in nulls:
            for point_on_whole in points:
                form = canonical_query(payload, sort_keys=sort_keys, null_as=null_as,
                                       point_on_whole=point_on_whole)
                if form not in seen:
                    seen.add(form)
                    yield form


def compute_signature(secret: str | bytes, timestamp: str, nonce: str, canonical: str) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    message = f"{timestamp}\n{nonce}\n{canonical}".encode()
    return base64.b64encode(hmac.digest(key, message, hashlib.sha256)).decode()


def new_nonce() -> str:
    return "".join(secrets.choice(NONCE_ALPHABET) for _ in range(NONCE_LENGTH))


def sign_headers(
    secret: str | bytes,
    body: bytes,
    *,
    timestamp: int | None = None,
    nonce: str | None = None,
    null_as: str = "",
    point_on_whole: bool = False,
) -> dict[str, str]:
    """The three signature headers for a JSON body, as PixVerse sends them (``null_as`` and
    ``point_on_whole`` sign one of the other spellings :func:`verify` accepts)."""
    payload = _load_flat_object(body)
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = new_nonce() if nonce is None else nonce
    canonical = canonical_query(payload, null_as=null_as, point_on_whole=point_on_whole)
    return {
        TIMESTAMP_HEADER: ts,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: compute_signature(secret, ts, nonce, canonical),
    }


@dataclass(frozen=True)
class VerifiedWebhook:
    """A webhook whose signature checked out."""

    payload: dict[str, Any]
    timestamp: int
    nonce: str


def verify(
    body: bytes,
    headers: Mapping[str, str],
    secrets_: Iterable[str | bytes],
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> VerifiedWebhook:
    """Check a PixVerse webhook against one or more secrets (oldest to newest, for rotation).

    Raises :class:`SignatureError` for missing or malformed headers, a timestamp outside
    ``tolerance_seconds`` of ``now`` either way, or a signature no secret produces, and
    :class:`MalformedPayloadError` for a body that is not a flat JSON object. The body
    is read as raw bytes: re-serialising parsed JSON is how signatures get lost.
    """
    timestamp_text = _header(headers, TIMESTAMP_HEADER)
    nonce = _header(headers, NONCE_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    # ASCII digits only (int() would also take "+1", "1_0" and other scripts' digits), and few
    # enough that the comparison with the clock cannot overflow.
    if not (timestamp_text.isascii() and timestamp_text.isdigit()):
        raise SignatureError(f"{TIMESTAMP_HEADER} is not an integer")
    if len(timestamp_text) > TIMESTAMP_MAX_DIGITS:
        raise SignatureError(f"{TIMESTAMP_HEADER} has more than {TIMESTAMP_MAX_DIGITS} digits")
    timestamp = int(timestamp_text)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise StaleTimestampError(
            f"{TIMESTAMP_HEADER} is outside the {tolerance_seconds:g} s window"
        )
    payload = _load_flat_object(body)
    expected = signature.encode()
    secrets_ = list(secrets_)
    # The canonical form (what PixVerse sends) first, so the usual webhook costs one canonical
    # form and one HMAC per secret; the other spellings only when that fails.
    canonical = canonical_query(payload)
    if _signed_by_any(secrets_, timestamp_text, nonce, canonical, expected):
        return VerifiedWebhook(payload=payload, timestamp=timestamp, nonce=nonce)
    for form in _other_forms(payload, canonical):
        if _signed_by_any(secrets_, timestamp_text, nonce, form, expected):
            return VerifiedWebhook(payload=payload, timestamp=timestamp, nonce=nonce)
    raise SignatureError("signature does not match")


def _signed_by_any(secrets_: Iterable[str | bytes], timestamp: str, nonce: str,
                   canonical: str, expected: bytes) -> bool:
    return any(
        hmac.compare_digest(compute_signature(secret, timestamp, nonce, canonical).encode(),
                            expected)
        for secret in secrets_
    )


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())  # ASGI's lower-case names
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    if not value:
        raise SignatureError(f"missing {name} header")
    return value


def _load_flat_object(body: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise MalformedPayloadError("body is not JSON") from None
    except RecursionError:  # nested deeper than the decoder goes; a flat object never is
        raise MalformedPayloadError("body is nested too deeply") from None
    if not isinstance(payload, dict):
        raise MalformedPayloadError("body is not a JSON object")
    return payload
