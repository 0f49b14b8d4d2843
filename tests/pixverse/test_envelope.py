"""The response envelope and the ErrCode -> exception mapping."""

from __future__ import annotations

import json

import pytest

from service.pixverse import envelope, errors


def _body(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_success_returns_resp_with_exact_big_ints() -> None:
    body = b'{"ErrCode":0,"ErrMsg":"success","Resp":{"video_id":629000000000000005}}'
    assert envelope.unwrap(200, body) == {"video_id": 629000000000000005}


def test_lower_case_variant() -> None:
    body = _body({"err_code": 500052, "err_msg": "image failed review", "resp": ""})
    with pytest.raises(errors.ModerationError) as info:
        envelope.unwrap(500, body)
    assert info.value.err_code == 500052 and info.value.http_status == 500
    assert envelope.unwrap(200, _body({"err_code": 0, "resp": {"a": 1}})) == {"a": 1}


@pytest.mark.parametrize(
    ("code", "cls", "retryable"),
    [
        (10002, errors.AuthenticationError, False),
        (400011, errors.ValidationError, False),
        (400017, errors.ValidationError, False),
        (400032, errors.ValidationError, False),
        (500008, errors.NotFoundError, False),
        (500063, errors.ModerationError, False),
        (500090, errors.InsufficientCreditsError, False),
        (500060, errors.QuotaExceededError, False),
        (500044, errors.ConcurrencyLimitError, True),
        (500069, errors.OverloadedError, True),
        (500100, errors.OverloadedError, True),
        (500041, errors.UploadError, True),
        (500031, errors.UploadError, False),
        (123456, errors.UnknownAPIError, False),
    ],
)
def test_error_codes_map_to_classes(code: int, cls: type[errors.APIError],
                                    retryable: bool) -> None:
    with pytest.raises(cls) as info:
        envelope.unwrap(200, _body({"ErrCode": code, "ErrMsg": "nope", "Resp": None}),
                        trace_id="t-1")
    assert info.value.retryable is retryable
    assert info.value.err_code == code and info.value.trace_id == "t-1"
    assert isinstance(info.value, errors.PixVerseError)


def test_concurrency_limit_has_a_default_retry_after() -> None:
    with pytest.raises(errors.ConcurrencyLimitError) as info:
        envelope.unwrap(200, _body({"ErrCode": 500044, "ErrMsg": "limit", "Resp": None}))
    assert info.value.retry_after == errors.DEFAULT_CONCURRENCY_RETRY_AFTER


def test_http_429_honours_retry_after() -> None:
    with pytest.raises(errors.RateLimitedError) as info:
        envelope.unwrap(429, b"slow down", {"retry-after": "7"})
    assert info.value.retry_after == 7.0 and info.value.retryable


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_http_5xx_without_envelope_is_retryable(status: int) -> None:
    with pytest.raises(errors.OverloadedError) as info:
        envelope.unwrap(status, b"<html>Bad Gateway</html>")
    assert info.value.retryable and info.value.http_status == status


def test_http_401_without_envelope_is_auth() -> None:
    with pytest.raises(errors.AuthenticationError):
        envelope.unwrap(401, b"")


def test_garbage_200_is_unknown_and_says_so() -> None:
    with pytest.raises(errors.UnknownAPIError, match="not a PixVerse envelope"):
        envelope.unwrap(200, b"<html>captive portal</html>")


def test_retry_after_dates_are_ignored() -> None:
    assert envelope.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert envelope.parse_retry_after("-3") == 0.0
