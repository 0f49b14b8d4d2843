"""PixVerse webhook signatures: the reference vectors, rotation, windows and bad input."""

from __future__ import annotations

import json

import pytest

from service.pixverse import signature
from service.pixverse.errors import MalformedPayloadError, SignatureError, StaleTimestampError

SECRET = "test-webhook-secret"
TIMESTAMP = 1760000000
NONCE = "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY"

VECTORS = [
    (
        b'{"id":"123456789","status":1,"url":"https://example.com/video.mp4","has_audio":true}',
        "has_audio=true&id=123456789&status=1&url=https%3A%2F%2Fexample.com%2Fvideo.mp4",
        "I5bBr+wPMVFFNg/Z4WkEQCIl0JraWE3GW6Y2b0rHXs4=",
    ),
    (
        b'{"id":"123456789","status":1,"url":"https://example.com/video.mp4","size":10.5,'
        b'"has_audio":true,"credits":100}',
        "credits=100&has_audio=true&id=123456789&size=10.5&status=1"
        "&url=https%3A%2F%2Fexample.com%2Fvideo.mp4",
        "6lHeXCZKIVyI3MPnnrkBLG/+SsIaQ7FVEEk2FOTT5b0=",
    ),
]


@pytest.mark.parametrize(("body", "canonical", "expected"), VECTORS)
def test_reference_vectors(body: bytes, canonical: str, expected: str) -> None:
    assert signature.canonical_query(json.loads(body)) == canonical
    headers = signature.sign_headers(SECRET, body, timestamp=TIMESTAMP, nonce=NONCE)
    assert headers[signature.SIGNATURE_HEADER] == expected
    verified = signature.verify(body, headers, [SECRET], now=TIMESTAMP + 1)
    assert verified.payload == json.loads(body)
    assert verified.nonce == NONCE


def _signed(body: bytes = VECTORS[0][0], secret: str = SECRET, **kw: object) -> dict[str, str]:
    return signature.sign_headers(secret, body, timestamp=TIMESTAMP, nonce=NONCE, **kw)  # type: ignore[arg-type]


def test_rotation_accepts_any_listed_secret() -> None:
    headers = _signed(secret="old-secret")
    signature.verify(VECTORS[0][0], headers, ["new-secret", "old-secret"], now=TIMESTAMP)
    with pytest.raises(SignatureError, match="does not match"):
        signature.verify(VECTORS[0][0], headers, ["new-secret"], now=TIMESTAMP)


@pytest.mark.parametrize("skew", [-301, 301, 10_000])
def test_timestamp_outside_window_is_rejected(skew: int) -> None:
    with pytest.raises(StaleTimestampError, match="window"):
        signature.verify(VECTORS[0][0], _signed(), [SECRET], now=TIMESTAMP + skew)


def test_window_is_configurable() -> None:
    signature.verify(VECTORS[0][0], _signed(), [SECRET], now=TIMESTAMP + 900,
                     tolerance_seconds=1000)


def test_tampered_body_fails() -> None:
    tampered = VECTORS[0][0].replace(b'"status":1', b'"status":8')
    with pytest.raises(SignatureError):
        signature.verify(tampered, _signed(), [SECRET], now=TIMESTAMP)


@pytest.mark.parametrize("missing", ["Webhook-Timestamp", "Webhook-Nonce", "Webhook-Signature"])
def test_missing_header(missing: str) -> None:
    headers = {k: v for k, v in _signed().items() if k != missing}
    with pytest.raises(SignatureError, match=missing):
        signature.verify(VECTORS[0][0], headers, [SECRET], now=TIMESTAMP)


def test_header_names_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in _signed().items()}
    signature.verify(VECTORS[0][0], headers, [SECRET], now=TIMESTAMP)


def test_non_integer_timestamp() -> None:
    headers = {**_signed(), "Webhook-Timestamp": "yesterday"}
    with pytest.raises(SignatureError, match="integer"):
        signature.verify(VECTORS[0][0], headers, [SECRET], now=TIMESTAMP)


@pytest.mark.parametrize("body", [b"not json", b"[1,2]", b'{"id":{"nested":1}}', b"\xff\xfe"])
def test_malformed_body(body: bytes) -> None:
    headers = {"Webhook-Timestamp": str(TIMESTAMP), "Webhook-Nonce": NONCE,
               "Webhook-Signature": "x"}
    with pytest.raises(MalformedPayloadError):
        signature.verify(body, headers, [SECRET], now=TIMESTAMP)


def test_insertion_order_signatures_also_verify() -> None:
    # PixVerse's CN docs say keys are "usually" sorted; a sender that keeps insertion order
    # must still verify.
    body = VECTORS[1][0]
    payload = json.loads(body)
    canonical = signature.canonical_query(payload, sort_keys=False)
    sig = signature.compute_signature(SECRET, str(TIMESTAMP), NONCE, canonical)
    headers = {"Webhook-Timestamp": str(TIMESTAMP), "Webhook-Nonce": NONCE,
               "Webhook-Signature": sig}
    signature.verify(body, headers, [SECRET], now=TIMESTAMP)


def test_value_rendering() -> None:
    payload = {"b": False, "f": 2.0, "n": None, "s": "a b&c", "big": 629000000000000005}
    assert signature.canonical_query(payload) == "b=false&big=629000000000000005&f=2&n=&s=a+b%26c"


def test_nonce_shape() -> None:
    nonce = signature.new_nonce()
    assert len(nonce) == 32 and nonce.isalnum()
    assert nonce != signature.new_nonce()
