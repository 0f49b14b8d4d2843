"""The PixVerse contract and client.

* :mod:`~service.pixverse.vocab`      models, qualities, durations, ratios, status codes
* :mod:`~service.pixverse.validation` the validation policy (what is refused, on whose word)
* :mod:`~service.pixverse.request`    the base of the typed requests (unknown fields kept)
* :mod:`~service.pixverse.models`     typed requests, one per generation endpoint
* :mod:`~service.pixverse.experimental` requests of the endpoints one weak source describes
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
from service.pixverse.experimental import (
    Agent,
    AudioVerification,
    Avatar,
    MusicMV,
    TtsSpeakerCreate,
    UsageDetail,
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
    VideoReference,
)
from service.pixverse.results import (
    Balance,
    ImageResult,
    Mask,
    Page,
    Submission,
    SwapMaskResult,
    TtsSpeaker,
    UploadedImage,
    UploadedMedia,
    UsagePage,
    VideoResult,
)
from service.pixverse.vocab import VideoStatus

__all__ = [
    "ENDPOINTS", "GENERATION_KINDS", "REQUEST_TYPES",
    "APIError", "Agent", "AudioVerification", "AuthenticationError", "Avatar", "Balance",
    "ConcurrencyLimitError", "Endpoint", "Extend", "Fusion", "FusionReference", "ImageResult",
    "ImageTemplate", "ImageToVideo",
    "InsufficientCreditsError", "InvalidRequest", "LipSync", "MalformedPayloadError", "Mask",
    "Mimic", "ModerationError", "Modify", "MultiTransition", "MultiTransitionFrame", "MusicMV",
    "NotFoundError", "OverloadedError", "Page", "PixVerseClient", "PixVerseError",
    "PixVerseRequest", "QuotaExceededError", "RateLimitedError", "Restyle", "SignatureError",
    "SoundEffect", "Submission", "Swap", "SwapMask", "SwapMaskResult", "TemplateVideo",
    "TextToVideo", "Transition", "TransportError", "TtsSpeaker", "TtsSpeakerCreate",
    "UnknownAPIError", "UploadError", "UploadedImage", "UploadedMedia", "Upscale", "UsageDetail",
    "UsagePage", "ValidationError", "VideoReference", "VideoResult", "VideoStatus",
    "new_trace_id",
]
