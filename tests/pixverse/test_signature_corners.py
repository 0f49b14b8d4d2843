"""The undocumented corners of PixVerse signatures (REFERENCE.md section 14) and the input that
used to escape :func:`signature.verify` as something other than its two errors."""

from __future__ import annotations

import json

import pytest

from service.pixverse import signature
from service.pixverse.errors import MalformedPayloadError, SignatureError

SECRET = "test-webhook-secret"
TIMESTAMP = 1760000000
NONCE = "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY"
#: Keys out of order, a null and a whole float: every corner at once.
CORNERS = b'{"status":1,"id":"42","size":10.0,"note":null}'


def _headers(canonical: str, timestamp: str = str(TIMESTAMP)) -> dict[str, str]:
    return {"Webhook-Timestamp": timestamp, "Webhook-Nonce": NONCE,
            "Webhook-Signature": signature.compute_signature(SECRET, timestamp, NONCE,
                                                             canonical)}


@pytest.mark.parametrize("canonical", [
    "id=42&note=&size=10&status=1",  # the canonical form: null empty, Go's float, sorted
    "id=42&note=null&size=10&status=1",
    "id=42&note=&size=10.0&status=1",
    "id=42&note=null&size=10.0&status=1",
    "status=1&id=42&size=10&note=",  # the body's own order, with each spelling
    "status=1&id=42&size=10&note=null",
    "status=1&id=42&size=10.0&note=",
    "status=1&id=42&size=10.0&note=null",
])
def test_each_plausible_spelling_verifies(canonical: str) -> None:
    verified = signature.verify(CORNERS, _headers(canonical), [SECRET], now=TIMESTAMP)
    assert verified.payload == json.loads(CORNERS)


@pytest.mark.parametrize("canonical", [
    "id=42&note=None&size=10&status=1",  # Python's spelling: no Go sender writes it
    "id=42&note=&size=10.00&status=1",
    "id=42&size=10&status=1",  # the null left out
])
def test_other_spellings_still_fail(canonical: str) -> None:
    with pytest.raises(SignatureError, match="does not match"):
        signature.verify(CORNERS, _headers(canonical), [SECRET], now=TIMESTAMP)


def test_signing_with_a_variant_spelling() -> None:
    headers = signature.sign_headers(SECRET, CORNERS, timestamp=TIMESTAMP, nonce=NONCE,
                                     null_as="null", point_on_whole=True)
    assert headers == _headers("id=42&note=null&size=10.0&status=1")


def test_the_canonical_form_costs_one_hmac_and_variants_come_after(
        monkeypatch: pytest.MonkeyPatch) -> None:
    computed: list[str] = []
    real = signature.compute_signature

    def counting(secret: str | bytes, timestamp: str, nonce: str, canonical: str) -> str:
        computed.append(canonical)
        return real(secret, timestamp, nonce, canonical)

    monkeypatch.setattr(signature, "compute_signature", counting)
    sorted_plain = b'{"id":"42","status":1,"url":"https://example.com/v.mp4"}'
    signature.verify(sorted_plain, signature.sign_headers(SECRET, sorted_plain,
                                                          timestamp=TIMESTAMP, nonce=NONCE),
                     [SECRET], now=TIMESTAMP)
    assert len(computed) == 2  # one to sign, one to verify: the hot path
    forged = _headers("forged")
    computed.clear()
    with pytest.raises(SignatureError):  # no corners, sorted: nothing else to try
        signature.verify(sorted_plain, forged, [SECRET], now=TIMESTAMP)
    assert len(computed) == 1
    computed.clear()
    with pytest.raises(SignatureError):  # every corner: each distinct spelling once
        signature.verify(CORNERS, forged, [SECRET], now=TIMESTAMP)
    assert computed[0] == "id=42&note=&size=10&status=1"
    assert len(computed) == len(set(computed)) == 8
    computed.clear()
    with pytest.raises(SignatureError):  # and once per secret
        signature.verify(CORNERS, forged, ["old", SECRET], now=TIMESTAMP)
    assert len(computed) == 16


@pytest.mark.parametrize("timestamp", [
    "9" * 400,  # used to overflow the float comparison with the clock: OverflowError
    "1" * 19,
    "\uff11\uff17\uff16\uff10\uff10\uff10\uff10\uff10\uff10\uff10",  # full-width digits
    "+1760000000", "1_760_000_000", "-1760000000", " 1760000000",
])
def test_a_timestamp_that_is_not_plain_seconds_is_a_signature_error(timestamp: str) -> None:
    headers = {**_headers("id=42&note=&size=10&status=1"), "Webhook-Timestamp": timestamp}
    with pytest.raises(SignatureError, match="Webhook-Timestamp"):  # the clock is a float
        signature.verify(CORNERS, headers, [SECRET], now=TIMESTAMP + 0.5)


@pytest.mark.parametrize("body", [
    b"[" * 20_000 + b"]" * 20_000,  # used to raise RecursionError
    b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
])
def test_a_body_nested_too_deep_is_malformed(body: bytes) -> None:
    headers = _headers("x")
    with pytest.raises(MalformedPayloadError):
        signature.verify(body, headers, [SECRET], now=TIMESTAMP)


def test_a_lone_surrogate_is_signed_as_the_replacement_character() -> None:
    # JSON may spell a lone UTF-16 surrogate; UTF-8 cannot (it used to raise
    # UnicodeEncodeError). Go's decoder, PixVerse's, reads it as U+FFFD.
    body = b'{"id":"42","url":"a\\ud800b","\\udfff":"k"}'
    payload = json.loads(body)
    assert signature.canonical_query(payload) == "id=42&url=a%EF%BF%BDb&%EF%BF%BD=k"
    headers = signature.sign_headers(SECRET, body, timestamp=TIMESTAMP, nonce=NONCE)
    assert signature.verify(body, headers, [SECRET], now=TIMESTAMP).payload == payload
    with pytest.raises(SignatureError):
        signature.verify(body, _headers("forged"), [SECRET], now=TIMESTAMP)


def test_whole_floats_in_every_form() -> None:
    for value, go, pointed in [(10.0, "10", "10.0"), (0.0, "0", "0.0"), (-2.0, "-2", "-2.0"),
                               (1e20, "100000000000000000000", "100000000000000000000.0"),
                               (1.5e-07, "0.00000015", "0.00000015"),
                               (10.5, "10.5", "10.5")]:
        for point, expected in zip((False, True), (go, pointed), strict=True):
            assert signature.canonical_query({"s": value}, point_on_whole=point) == \
                f"s={expected}", (value, point)
