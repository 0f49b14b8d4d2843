"""The price function against REFERENCE.md section 10's tables."""

from __future__ import annotations

from typing import Any

import pytest

from service.simulator.pricing import FALLBACK_CREDITS_PER_SECOND, PriceQuote, price


def quote(kind: str = "text_to_video", **payload: Any) -> PriceQuote:
    return PriceQuote(kind=kind, payload=payload)


@pytest.mark.parametrize(("model", "quality", "duration", "extra", "credits"), [
    ("v5", "360p", 5, {}, 45),
    ("v5", "720p", 8, {}, 120),
    ("v5", "1080p", 5, {}, 120),
    ("v4.5", "540p", 5, {"motion_mode": "fast"}, 90),
    ("v4", "720p", 5, {"motion_mode": "fast"}, 120),
    ("v5.6", "720p", 10, {}, 99),
    ("v5.6", "540p", 5, {"generate_audio_switch": True}, 90),
    ("v5.5", "1080p", 8, {"generate_audio_switch": True}, 195),
    ("v6", "720p", 5, {}, 45),
    ("v6", "1080p", 15, {"generate_audio_switch": True}, 345),
    ("c1", "360p", 3, {}, 15),
    ("v5", "540p", 8, {"sound_effect_switch": True}, 110),
])
def test_clip_tables(model: str, quality: str, duration: int, extra: dict[str, Any],
                     credits: int) -> None:
    assert price(quote(model=model, quality=quality, duration=duration, **extra)) == credits


def test_other_products() -> None:
    assert price(quote("lip_sync", lip_sync_tts_content="x" * 31)) == 12
    assert price(PriceQuote("lip_sync", {}, audio_bytes=16_001)) == 8
    assert price(PriceQuote("lip_sync", {}, audio_bytes=10**9)) == 120  # capped at 30 s
    assert price(PriceQuote("sound_effect", {}, source_seconds=8)) == 20
    assert price(PriceQuote("mimic", {"quality": "720p"}, source_seconds=5)) == 60
    frames = [{"duration": 3}, {"duration": 4}, {}]
    assert price(quote("multi_transition", multi_transition=frames, quality="540p")) == 105
    assert price(quote("swap_mask")) == 5
    assert price(quote("image_template")) == 20
    assert price(PriceQuote("restyle", {}, source_seconds=8)) == 8 * FALLBACK_CREDITS_PER_SECOND
    assert price(quote(model="v9", quality="540p", duration=4)) == 4 * FALLBACK_CREDITS_PER_SECOND


def test_fusion_with_video_references_costs_double() -> None:
    base = price(quote("fusion", model="v6", quality="540p", duration=5))
    assert price(quote("fusion", model="v6", quality="540p", duration=5,
                       video_references=[{"id": 1}])) == 2 * base
