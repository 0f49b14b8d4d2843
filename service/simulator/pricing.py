"""What a simulated job costs, in credits (REFERENCE.md section 10).

The tables are PixVerse's published ones where we have them; the rest are approximations,
marked here so nobody mistakes them for PixVerse's numbers:

* v3.5/v4/v4.5/v5 per clip (10.1): 5 s = 45/45/60/120 at 360p/540p/720p/1080p, 8 s doubles,
  ``motion_mode: fast`` doubles a 5 s clip (v5 ignores motion_mode). Fusion uses the same table.
* v5.5 is billed like v5.6 (10.2); only the v5.6 table was captured.
* v6 per second (10.3); fusion with ``video_references`` doubles. **c1 is billed like v6** (its
  rates were not captured).
* Legacy extras on text/image/transition (v5 and older): ``sound_effect_switch`` adds 10 credits
  per started 5 s block, ``lip_sync_tts_switch`` adds 4 credits per started 15 UTF-8 bytes of
  ``lip_sync_tts_content`` (both from 10.5, where they are priced as separate products).
* Lip sync (10.5): 4 credits per second of audio, rounded up, or 4 per started 15 UTF-8 bytes
  of TTS text. The simulator cannot decode audio, so an upload's length is *estimated* from its
  size at 128 kbit/s (16000 bytes/s), clamped to 1..30 s. The avatar endpoint (experimental,
  no price captured) is billed the same way.
* Sound effect (10.5): 10 credits per started 5 s block of the source video.
* Mimic (10.5): 9/10/12 credits per second of the source video at 360p/540p/720p.
* Multi-transition (tiers not captured): 15/15/20/40 credits per second of total length at
  360p/540p/720p/1080p, i.e. the legacy 5 s price spread per second. It reproduces the one
  official example (540p, 7 s -> 105 credits).
* Swap mask: 5 credits, image template: 20 credits (the official examples' numbers).
* Everything else (restyle, swap, modify, upscale, the agents, music videos, and
  combinations not in a table):
  :data:`FALLBACK_CREDITS_PER_SECOND` per second of the job's length.

An uploaded video's length is unknown to the simulator; it counts as
:data:`DEFAULT_SOURCE_SECONDS`. :func:`price` is the default; any callable with the
:class:`PriceFunction` shape can replace it (``create_app(price_function=...)``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, Final, Protocol

from service.pixverse import vocab

FALLBACK_CREDITS_PER_SECOND: Final = 10
#: Length assumed for an uploaded video (the simulator does not decode media).
DEFAULT_SOURCE_SECONDS: Final = 5
#: Bitrate used to estimate an uploaded audio file's length from its size.
AUDIO_BYTES_PER_SECOND: Final = 16_000
SWAP_MASK_CREDITS: Final = 5
IMAGE_TEMPLATE_CREDITS: Final = 20

_LEGACY_5S: Final = {"360p": 45, "540p": 45, "720p": 60, "1080p": 120}
_V56: Final = {  # quality -> {duration: credits}
    "360p": {5: 35, 8: 70, 10: 77},
    "540p": {5: 35, 8: 70, 10: 77},
    "720p": {5: 45, 8: 90, 10: 99},
    "1080p": {5: 75, 8: 150},
}
_V56_AUDIO: Final = {
    "360p": {5: 80, 8: 115, 10: 122},
    "540p": {5: 90, 8: 115, 10: 122},
    "720p": {5: 80, 8: 135, 10: 144},
    "1080p": {5: 150, 8: 195},
}
_V6_PER_SECOND: Final = {"360p": 5, "540p": 7, "720p": 9, "1080p": 18}
_V6_AUDIO_PER_SECOND: Final = {"360p": 7, "540p": 9, "720p": 12, "1080p": 23}
_MIMIC_PER_SECOND: Final = {"360p": 9, "540p": 10, "720p": 12}
_MULTI_TRANSITION_PER_SECOND: Final = {"360p": 15, "540p": 15, "720p": 20, "1080p": 40}

#: Endpoints priced by model, quality and duration.
_MODEL_PRICED: Final = frozenset(
    {"text_to_video", "image_to_video", "template_video", "transition", "extend", "fusion"}
)


@dataclasses.dataclass(frozen=True)
class PriceQuote:
    """Everything a price function may look at."""

    kind: str  # endpoint name, e.g. "text_to_video"
    payload: Mapping[str, Any]  # the validated request body
    #: Length of the source video (editing endpoints), seconds.
    source_seconds: int = DEFAULT_SOURCE_SECONDS
    #: Size of the uploaded audio (lip sync with ``audio_media_id``), bytes.
    audio_bytes: int | None = None


class PriceFunction(Protocol):
    def __call__(self, quote: PriceQuote) -> int: ...


def price(quote: PriceQuote) -> int:
    """Credits for one job, following the module docstring's tables."""
    p = quote.payload
    kind = quote.kind
    if kind in _MODEL_PRICED:
        duration = int(p.get("duration") or 5)
        credits = clip_price(str(p.get("model", "")), str(p.get("quality", "")), duration,
                             audio=p.get("generate_audio_switch") is True,
                             fast=p.get("motion_mode") == "fast")
        if kind == "fusion" and p.get("video_references"):
            credits *= 2
        if p.get("sound_effect_switch") is True:
            credits += 10 * math.ceil(duration / 5)
        if p.get("lip_sync_tts_switch") is True or p.get("lip_sync_switch") is True:
            credits += tts_price(str(p.get("lip_sync_tts_content") or ""))
        return credits
    if kind in ("lip_sync", "avatar"):
        if quote.audio_bytes is not None:
            seconds = min(30, max(1, math.ceil(quote.audio_bytes / AUDIO_BYTES_PER_SECOND)))
            return 4 * seconds
        return tts_price(str(p.get("lip_sync_tts_content") or ""))
    if kind == "sound_effect":
        return 10 * math.ceil(quote.source_seconds / 5)
    if kind == "mimic":
        rate = _MIMIC_PER_SECOND.get(str(p.get("quality")), FALLBACK_CREDITS_PER_SECOND)
        return rate * quote.source_seconds
    if kind == "multi_transition":
        total = sum(int(f.get("duration") or 0) for f in p.get("multi_transition") or ())
        rate = _MULTI_TRANSITION_PER_SECOND.get(str(p.get("quality")), FALLBACK_CREDITS_PER_SECOND)
        return rate * max(1, total)
    if kind == "swap_mask":
        return SWAP_MASK_CREDITS
    if kind == "image_template":
        return IMAGE_TEMPLATE_CREDITS
    return FALLBACK_CREDITS_PER_SECOND * quote.source_seconds


def clip_price(model: str, quality: str, duration: int, *, audio: bool = False,
               fast: bool = False) -> int:
    """A generated clip's price by model, quality and length; flat fallback if unknown."""
    if model in vocab.PER_SECOND_MODELS:
        table = _V6_AUDIO_PER_SECOND if audio else _V6_PER_SECOND
        if quality in table:
            return table[quality] * duration
    elif model in ("v5.5", "v5.6"):
        found = (_V56_AUDIO if audio else _V56).get(quality, {}).get(duration)
        if found is not None:
            return found
    elif model in vocab.LEGACY_MODELS and quality in _LEGACY_5S and duration in (5, 8):
        base = _LEGACY_5S[quality]
        if duration == 8:
            return 2 * base
        return 2 * base if fast and model != "v5" else base
    return FALLBACK_CREDITS_PER_SECOND * duration


def tts_price(text: str) -> int:
    """4 credits per started 15 bytes of UTF-8 text (at least one block)."""
    return 4 * max(1, math.ceil(len(text.encode("utf-8")) / 15))
