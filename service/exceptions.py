"""The root of every exception pixhook raises on purpose.

    ServiceError
    └── PixVerseError            (service.pixverse.errors: the PixVerse contract and client)
        ├── InvalidRequest       bad input caught locally, before any network call
        ├── SignatureError       a webhook signature that does not verify
        ├── MalformedPayloadError a webhook body that is not a flat JSON object
        ├── TransportError       timeout / connection failure (ambiguous for a POST)
        └── APIError             PixVerse answered with a non-zero ErrCode or an HTTP error
            └── AuthenticationError, ValidationError, NotFoundError, ModerationError,
                InsufficientCreditsError, QuotaExceededError, ConcurrencyLimitError,
                RateLimitedError, OverloadedError, UploadError, UnknownAPIError
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class for pixhook's own errors."""
