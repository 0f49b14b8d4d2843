"""Typed requests for the endpoints only one weak source describes: **experimental**.

Each rests on the semi-official pixverse-api-kit (REFERENCE.md rows 25-28 and §14, "one source
each, mostly resellers mirroring PixVerse"); the fields, which are required and their types
follow it and are always checked, but its value rules (vocabularies, counts, ranges) run only
in strict mode, since no official source backs them. Ids the kit sends as decimal strings are
typed ``int | str``.

* :class:`Avatar`            ``POST /video/avatar/generate``          a video (a kind)
* :class:`Agent`             ``POST /video/agent/generate``           a video (a kind)
* :class:`MusicMV`           ``POST /video/music_mv_agent/generate``  a video (a kind)
* :class:`AudioVerification` ``POST /audio/verification``             ``{}``; music MV needs it
* :class:`TtsSpeakerCreate`  ``POST /video/tts_speaker``              a custom voice
* :class:`UsageDetail`       ``POST /account/billing/usage-detail``   charges and refunds
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from service.pixverse import vocab
from service.pixverse.request import Confidence, PixVerseRequest
from service.pixverse.validation import WRONG_TYPE, Problems

_AUDIO_OR_TTS: Final = (("audio_media_id",), ("lip_sync_tts_speaker_id", "lip_sync_tts_content"))
#: The kit's fixed agent ids.
VIRAL_RECREATION_AGENT: Final = "414562414124109"
REAL_ESTATE_AGENT: Final = "419629433597950"


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Experimental(PixVerseRequest):
    confidence: ClassVar[Confidence] = "one source"
    experimental: ClassVar[bool] = True


@dataclasses.dataclass(frozen=True, kw_only=True)
class Avatar(_Experimental):
    """A talking avatar from a portrait (``img_id``) and one audio source: an uploaded
    ``audio_media_id``, or a TTS speaker with its text."""

    endpoint: ClassVar[str] = "avatar"
    one_of: ClassVar[tuple[tuple[tuple[str, ...], ...], ...]] = (_AUDIO_OR_TTS,)

    img_id: int | str
    quality: str
    audio_media_id: int | str | None = None
    lip_sync_tts_speaker_id: str | None = None
    lip_sync_tts_content: str | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        problems.quality(payload.get("quality"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Agent(_Experimental):
    """A video agent, picked by ``agent_id``: viral recreation (a prompt, 1-5 image references
    and one video reference) or real estate (``model`` ``pro`` or ``fast``, a listing's
    ``product_url`` or 5+ images). ``model`` here is the agent's tier, not a video model."""

    endpoint: ClassVar[str] = "agent"

    agent_id: int | str
    prompt: str | None = None
    model: str | None = None
    quality: str | None = None
    aspect_ratio: str | None = None
    duration: int | None = None
    img_references: list[dict[str, Any]] | None = None
    video_references: list[dict[str, Any]] | None = None
    product_url: str | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        problems.prompt(payload.get("prompt"))
        agent = str(payload.get("agent_id"))
        if agent == VIRAL_RECREATION_AGENT:
            problems.require("prompt", payload.get("prompt"))
            problems.max_items("img_references", payload.get("img_references") or [], 1, 5)
            problems.max_items("video_references", payload.get("video_references") or [], 1, 1)
        elif agent == REAL_ESTATE_AGENT:
            problems.choice("model", payload.get("model") or "", ("pro", "fast"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class MusicMV(_Experimental):
    """A music video for a song (``audio_media_id``, which must have passed
    :class:`AudioVerification` first: PixVerse answers 701020 otherwise)."""

    endpoint: ClassVar[str] = "music_mv"
    aliases: ClassVar[Mapping[str, str]] = {"image_references": "img_references"}

    mv_agent_type: str
    audio_media_id: int | str
    aspect_ratio: str
    quality: str
    img_references: list[dict[str, Any]] | None = None
    style_img_references: list[dict[str, Any]] | None = None
    music_style: str | None = None
    mv_style: str | None = None
    caption_switch: bool | None = None
    lip_sync_switch: bool | None = None
    instrumental_switch: bool | None = None
    seed: int | None = None
    lyric_text: str | None = None
    lyric_timestamp: dict[str, Any] | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        problems.choice("mv_agent_type", payload.get("mv_agent_type"),
                        vocab.MUSIC_MV_AGENT_TYPES)
        problems.choice("aspect_ratio", payload.get("aspect_ratio"), vocab.MUSIC_MV_ASPECT_RATIOS)
        problems.quality(payload.get("quality"), vocab.MUSIC_MV_QUALITIES)
        for field in ("img_references", "style_img_references"):
            problems.max_items(field, payload.get(field), 0, 1)
        problems.int_range("seed", payload.get("seed"), 0)
        problems.prompt_length("lyric_text", payload.get("lyric_text"),
                               vocab.LONG_PROMPT_CHARS - 1)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AudioVerification(_Experimental):
    """Clear an uploaded song for :class:`MusicMV` (moderation: 500063 when refused)."""

    endpoint: ClassVar[str] = "audio_verification"

    audio_media_id: int | str


@dataclasses.dataclass(frozen=True, kw_only=True)
class TtsSpeakerCreate(_Experimental):
    """A custom TTS voice from an uploaded audio sample; its ``speaker_id`` then works
    wherever a ``lip_sync_tts_speaker_id`` does."""

    endpoint: ClassVar[str] = "create_tts_speaker"

    name: str
    audio_media_id: int | str


@dataclasses.dataclass(frozen=True, kw_only=True)
class UsageDetail(_Experimental):
    """Charges and refunds over a UTC interval (``YYYY-MM-DD HH:mm:ss``, at most 30 days),
    a page of ``limit`` (1-100) at a time; ``cursor`` continues a listing."""

    endpoint: ClassVar[str] = "usage_detail"

    start_time: str | None = None
    end_time: str | None = None
    limit: int | None = None
    cursor: str | None = None
    credits_status: str | None = None
    creation_type: list[str] | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        problems.int_range("limit", payload.get("limit"), 1, 100)
        problems.choice("credits_status", payload.get("credits_status"),
                        vocab.USAGE_CREDITS_STATUSES)
        for i, kind in enumerate(payload.get("creation_type") or ()):
            problems.choice(f"creation_type[{i}]", kind, vocab.USAGE_CREATION_TYPES)
        start, end = (parse_usage_time(problems, name, payload.get(name))
                      for name in ("start_time", "end_time"))
        if start is not None and end is not None:
            if start > end:
                problems.add("start_time", "is later than end_time")
            elif end - start > datetime.timedelta(days=vocab.USAGE_MAX_DAYS):
                problems.add("end_time", f"is more than {vocab.USAGE_MAX_DAYS} days after "
                                         "start_time")


def parse_usage_time(problems: Problems, field: str, value: Any) -> datetime.datetime | None:
    """A usage-detail time (``2026-09-01 00:00:00``, UTC), or None (absent, or a problem)."""
    if value is None:
        return None
    try:
        parsed = datetime.datetime.strptime(value, vocab.USAGE_TIME_FORMAT)
    except (TypeError, ValueError):
        problems.add(field, f"{value!r} is not YYYY-MM-DD HH:mm:ss", err_code=WRONG_TYPE)
        return None
    return parsed.replace(tzinfo=datetime.UTC)
