"""PixVerse error codes and the exceptions the client raises for them.

Each documented ``ErrCode`` (REFERENCE.md section 9) maps to one class. A class says whether
trying again later can succeed (``retryable``); a rate or concurrency error also carries how long
to wait (``retry_after``, seconds) when PixVerse said so or a sensible default exists.

The PixVerse branch of pixhook's exception tree (drawn whole in :mod:`service.exceptions`),
with the codes each class stands for::

    PixVerseError
    ├── InvalidRequest            local check failed; nothing was sent
    ├── SignatureError            webhook signature missing, malformed or wrong
    │   └── StaleTimestampError   timestamp outside the replay window
    ├── MalformedPayloadError     webhook body is not a flat JSON object
    ├── TransportError            timeout / connection error; retryable, ambiguous for a POST
    └── APIError                  PixVerse answered with an error
        ├── AuthenticationError        10001-10005, 400012, 500020, HTTP 401/403
        ├── ValidationError            400011, 400013, 400017-400019, 400032, 5000[3x], 7010xx
        ├── NotFoundError              500008, 500064
        ├── ModerationError            500052, 500054, 500063
        ├── InsufficientCreditsError   500090
        ├── QuotaExceededError         500060
        ├── ConcurrencyLimitError      500044        (retryable)
        ├── RateLimitedError           HTTP 429      (retryable, honours Retry-After)
        ├── OverloadedError            500069, 500100, 99999, HTTP 5xx (retryable)
        ├── UploadError                500031, 500041 (500041 retryable)
        └── UnknownAPIError            anything else, or an unreadable envelope
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Final

from service.exceptions import ServiceError

#: Seconds to wait after a 500044 when PixVerse gives no hint (it never does, as far as known).
DEFAULT_CONCURRENCY_RETRY_AFTER: Final = 5.0


class PixVerseError(ServiceError):
    """Base class for everything the PixVerse contract and client raise."""

    retryable: ClassVar[bool] = False


class InvalidRequest(PixVerseError, ValueError):
    """A request failed local validation; nothing was sent to PixVerse.

    ``field`` names the offending field, ``allowed`` (when known) lists the accepted values, and
    ``err_code`` is the ErrCode PixVerse would answer with (the simulator reuses it).
    A request with several bad fields raises one exception for all of them: ``errors`` holds
    one :class:`InvalidRequest` per problem, and ``field``, ``reason``, ``allowed`` and
    ``err_code`` are the first one's; the message lists them all.
    """

    def __init__(
        self,
        field: str,
        message: str,
        *,
        allowed: tuple[object, ...] | None = None,
        err_code: int = 400017,
        errors: Sequence[InvalidRequest] = (),
    ) -> None:
        self.field = field
        self.allowed = allowed
        self.err_code = err_code
        self.reason = message
        text = f"{field}: {message}"
        if allowed:
            text += f" (allowed: {', '.join(map(str, allowed))})"
        #: Every problem found, in the order found (just this one for a single problem).
        self.errors: tuple[InvalidRequest, ...] = tuple(errors) or (self,)
        if len(self.errors) > 1:
            text = "; ".join(str(problem) for problem in self.errors)
        super().__init__(text)

    @classmethod
    def combine(cls, problems: Sequence[InvalidRequest]) -> InvalidRequest:
        """One exception for several problems (each may itself hold several)."""
        flat = [inner for problem in problems for inner in problem.errors]
        if not flat:
            raise ValueError("no problems to combine")
        if len(flat) == 1:
            return flat[0]
        first = flat[0]
        return cls(first.field, first.reason, allowed=first.allowed, err_code=first.err_code,
                   errors=flat)

    def prefixed(self, prefix: str) -> InvalidRequest:
        """The same problems with ``prefix`` before each field (``then[0].params.``)."""
        return InvalidRequest.combine([
            InvalidRequest(prefix + p.field, p.reason, allowed=p.allowed, err_code=p.err_code)
            for p in self.errors])


class SignatureError(PixVerseError):
    """A webhook's signature headers are missing, malformed, stale, or do not match."""


class StaleTimestampError(SignatureError):
    """The webhook's timestamp is outside the accepted window (a replay, or a skewed clock)."""


class MalformedPayloadError(PixVerseError):
    """A webhook body that is not a flat JSON object, so it cannot be verified or used."""


class TransportError(PixVerseError):
    """The request may or may not have reached PixVerse (timeout, reset, refused...).

    For a POST this is *ambiguous*: the job may exist. Retry only with the same trace id.
    """

    retryable = True

    def __init__(self, message: str, *, trace_id: str | None = None) -> None:
        self.trace_id = trace_id
        super().__init__(message)


class APIError(PixVerseError):
    """PixVerse answered, and the answer is an error."""

    def __init__(
        self,
        err_code: int | None,
        err_msg: str,
        *,
        http_status: int = 200,
        trace_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.err_code = err_code
        self.err_msg = err_msg
        self.http_status = http_status
        self.trace_id = trace_id
        self.retry_after = retry_after
        code = f"ErrCode {err_code}" if err_code is not None else f"HTTP {http_status}"
        super().__init__(f"{code}: {err_msg}")


class AuthenticationError(APIError):
    """The API key is missing, invalid, expired or not allowed to do this."""


class ValidationError(APIError):
    """PixVerse rejected the request's content (missing field, bad value, bad image...)."""


class NotFoundError(APIError):
    """The referenced video, image or media does not exist (or was deleted)."""


class ModerationError(APIError):
    """The input failed PixVerse's content moderation."""


class InsufficientCreditsError(APIError):
    """The account's credit balance is below the job's price."""


class QuotaExceededError(APIError):
    """A monthly quota (effect template activations) is used up."""


class ConcurrencyLimitError(APIError):
    """Too many generations are running for this plan; try again when one finishes."""

    retryable = True


class RateLimitedError(APIError):
    """HTTP 429; ``retry_after`` carries the server's Retry-After when given."""

    retryable = True


class OverloadedError(APIError):
    """PixVerse is overloaded or failed internally; try again later."""

    retryable = True


class UploadError(APIError):
    """An upload could not be read or stored."""

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.err_code == 500041


class UnknownAPIError(APIError):
    """An ErrCode this client does not know, or an answer that is not an envelope."""


_CODE_CLASSES: Final[dict[int, type[APIError]]] = {
    **{code: AuthenticationError for code in (10001, 10002, 10003, 10004, 10005, 400012, 500020)},
    **{
        code: ValidationError
        for code in (400011, 400013, 400017, 400018, 400019, 400032, 500030, 500032, 500033,
                     500042, 500070, 500071, 701002, 701003, 701020)
    },
    500008: NotFoundError,
    500064: NotFoundError,
    500052: ModerationError,
    500054: ModerationError,
    500063: ModerationError,
    500090: InsufficientCreditsError,
    500060: QuotaExceededError,
    500044: ConcurrencyLimitError,
    500069: OverloadedError,
    500100: OverloadedError,
    99999: OverloadedError,
    500031: UploadError,
    500041: UploadError,
}

#: The message PixVerse (and the simulator) gives for each documented code.
ERROR_MESSAGES: Final[dict[int, str]] = {
    10002: "Invalid API-KEY",
    99999: "unknown error",
    400011: "required parameter is missing or empty",
    400012: "invalid account",
    400013: "invalid binding request: wrong type or value",
    400017: "invalid parameter",
    400018: "prompt is too long (maximum 2048 characters)",
    400019: "negative prompt is too long (maximum 2048 characters)",
    400032: "invalid image id",
    500008: "requested data does not exist",
    500020: "no permission for this operation",
    500030: "image is too large",
    500031: "failed to read image information",
    500032: "invalid image format",
    500033: "invalid image width or height",
    500041: "image upload failed",
    500042: "invalid image path",
    500044: "reached the limit for concurrent generations",
    500052: "the uploaded image failed moderation",
    500054: "image content is not compliant, use another image",
    500060: "monthly effect activation quota used up",
    # PixVerse's own wording, as the semi-official kit recorded it (REFERENCE.md §14 asks the
    # simulator for the moderation body as PixVerse sends it).
    500063: "The input content does not comply with platform specifications, please re-enter",
    500064: "content has been deleted",
    500069: "system is under high load, try again later",
    500070: "template is not activated",
    500071: "effect does not support 720p or 1080p",
    500090: "insufficient balance",
    500100: "internal server error",
    701002: "upload an image with a clear subject (person or animal)",
    701003: "the reference video must feature a person",
    # Music-MV agent before /audio/verification [one source: the kit's recorded answer].
    701020: "The audio content has not been verified. Please call the audio verification "
            "interface first.",
}


def error_for(
    err_code: int | None,
    err_msg: str,
    *,
    http_status: int = 200,
    trace_id: str | None = None,
    retry_after: float | None = None,
) -> APIError:
    """Build the exception for an error answer: by ErrCode first, then by HTTP status."""
    cls: type[APIError] | None = _CODE_CLASSES.get(err_code) if err_code is not None else None
    if cls is None:
        if http_status == 429:
            cls = RateLimitedError
        elif http_status in (401, 403):
            cls = AuthenticationError
        elif http_status >= 500:
            cls = OverloadedError
        else:
            cls = UnknownAPIError
    if cls is ConcurrencyLimitError and retry_after is None:
        retry_after = DEFAULT_CONCURRENCY_RETRY_AFTER
    return cls(err_code, err_msg, http_status=http_status, trace_id=trace_id,
               retry_after=retry_after)
