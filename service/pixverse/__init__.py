"""The PixVerse contract and client.

* :mod:`~service.pixverse.vocab`      models, qualities, durations, ratios, status codes
* :mod:`~service.pixverse.models`     typed requests, one per generation endpoint
* :mod:`~service.pixverse.endpoints`  paths and result kinds
* :mod:`~service.pixverse.errors`     ErrCodes and the exceptions for them
* :mod:`~service.pixverse.envelope`   the ``{ErrCode, ErrMsg, Resp}`` envelope
* :mod:`~service.pixverse.signature`  webhook signatures
* :mod:`~service.pixverse.client`     :class:`PixVerseClient`
"""

from __future__ import annotations

from service.pixverse.client import PixVerseClient, new_trace_id
from service.pixverse.endpoints import ENDPOINTS, GENERATION_KINDS, Endpoint
from service.pixverse.errors import (
    APIError,
    AuthenticationError,
    ConcurrencyLimitError,
    InsufficientCreditsError,
    InvalidRequest,
    MalformedPayloadError,
    ModerationError,
    NotFoundError,
    OverloadedError,
    PixVerseError,
    QuotaExceededError,
    RateLimitedError,
    SignatureError,
    TransportError,
    UnknownAPIError,
    UploadError,
    ValidationError,
)
from service.pixverse.models import (
    REQUEST_TYPES,
    Extend,
    Fusion,
    FusionReference,
    ImageTemplate,
    ImageToVideo,
    LipSync,
    Mimic,
    Modify,
    MultiTransition,
    MultiTransitionFrame,
    PixVerseRequest,
    Restyle,
    SoundEffect,
    Swap,
    SwapMask,
    TemplateVideo,
    TextToVideo,
    Transition,
    Upscale,
)
from service.pixverse.results import (
    Balance,
    ImageResult,
    Mask,
    Page,
    Submission,
    SwapMaskResult,
    UploadedImage,
    UploadedMedia,
    VideoResult,
)
from service.pixverse.vocab import VideoStatus

__all__ = [
    "ENDPOINTS", "GENERATION_KINDS", "REQUEST_TYPES",
    "APIError", "AuthenticationError", "Balance", "ConcurrencyLimitError", "Endpoint", "Extend",
    "Fusion", "FusionReference", "ImageResult", "ImageTemplate", "ImageToVideo",
    "InsufficientCreditsError", "InvalidRequest", "LipSync", "MalformedPayloadError", "Mask",
    "Mimic", "ModerationError", "Modify", "MultiTransition", "MultiTransitionFrame",
    "NotFoundError", "OverloadedError", "Page", "PixVerseClient", "PixVerseError",
    "PixVerseRequest", "QuotaExceededError", "RateLimitedError", "Restyle", "SignatureError",
    "SoundEffect", "Submission", "Swap", "SwapMask", "SwapMaskResult", "TemplateVideo",
    "TextToVideo", "Transition", "TransportError", "UnknownAPIError", "UploadError",
    "UploadedImage", "UploadedMedia", "Upscale", "ValidationError", "VideoResult", "VideoStatus",
    "new_trace_id",
]
