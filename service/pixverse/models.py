"""Typed PixVerse requests, one class per generation endpoint, checked when built.

    >>> TextToVideo(prompt="a lantern over a lake", model="v6", duration=5,
    ...             quality="540p", aspect_ratio="21:9").to_payload()["aspect_ratio"]
    '21:9'
    >>> TextToVideo(prompt="x", model="v5", duration=10, quality="540p",
    ...             aspect_ratio="16:9")  # doctest: +NORMALIZE_WHITESPACE
    Traceback (most recent call last):
    ...
    service.pixverse.errors.InvalidRequest: duration: 10 s is not offered by v5 at 540p
    (allowed: 5, 8)

The machinery (required fields, one-of groups, unknown fields kept in ``extra``) is in
:mod:`service.pixverse.request`; each class here adds its endpoint's value rules in
:meth:`check_rules`, each rule marked with the source it rests on (the policy, and what strict
mode adds, is in :mod:`service.pixverse.validation`). :meth:`PixVerseRequest.validate_payload`
runs the same checks on a raw JSON object, which is how the simulator validates what it
receives. The experimental endpoints (one weak source each) are in
:mod:`service.pixverse.experimental`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar, TypedDict

from service.pixverse import experimental, vocab
from service.pixverse.request import Confidence, PixVerseRequest
from service.pixverse.validation import Problems, generation

_VIDEO_SOURCE = (("source_video_id",), ("video_media_id",))


class FusionReference(TypedDict):
    type: str  # "subject" or "background"
    img_id: int
    ref_name: str


class VideoReference(TypedDict, total=False):
    """A video reference of fusion's omni mode [third-party: ComfyUI]."""

    ref_name: str
    video_media_id: int  # or source_video_id, exactly one
    source_video_id: int


class MultiTransitionFrame(TypedDict, total=False):
    img_id: int
    duration: int  # required on every frame but the last
    prompt: str


# -- text, image and template video -----------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class _GenerationSwitches(PixVerseRequest):
    """Optional fields shared by text-to-video, image-to-video and transition."""

    negative_prompt: str | None = None
    seed: int | None = None
    motion_mode: str | None = None
    generate_audio_switch: bool | None = None
    sound_effect_switch: bool | None = None
    sound_effect_content: str | None = None
    lip_sync_tts_switch: bool | None = None
    lip_sync_tts_content: str | None = None
    lip_sync_tts_speaker_id: str | None = None

    # The older spec spells it lip_sync_switch (sources disagree: accept both).
    aliases: ClassVar[Mapping[str, str]] = {"lip_sync_switch": "lip_sync_tts_switch"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class TextToVideo(_GenerationSwitches):
    endpoint: ClassVar[str] = "text_to_video"

    prompt: str
    model: str
    duration: int
    quality: str
    aspect_ratio: str
    style: str | None = None
    camera_movement: str | None = None
    template_id: int | None = None
    generate_multi_clip_switch: bool | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        generation(problems, payload, check_aspect_ratio=True)
        problems.prompt(payload.get("prompt"))  # 5000 [official: newer spec]


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageToVideo(_GenerationSwitches):
    endpoint: ClassVar[str] = "image_to_video"

    img_id: int
    prompt: str
    model: str
    duration: int
    quality: str
    style: str | None = None
    camera_movement: str | None = None
    generate_multi_clip_switch: bool | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        generation(problems, payload)
        problems.prompt(payload.get("prompt"), disputed=True)  # V6 table 2048, ComfyUI 5000


@dataclasses.dataclass(frozen=True, kw_only=True)
class TemplateVideo(PixVerseRequest):
    """An effect template applied to one image (``img_id``) or several (``img_ids``).

    Templates ignore the prompt and pick their own length, so ``prompt`` defaults to ``""``
    and ``duration`` to 5, as PixVerse's guide says to send; ``model`` may be any model.
    """

    endpoint: ClassVar[str] = "template_video"
    one_of: ClassVar[tuple[tuple[tuple[str, ...], ...], ...]] = ((("img_id",), ("img_ids",)),)
    may_be_empty: ClassVar[frozenset[str]] = frozenset({"prompt"})

    template_id: int
    quality: str
    model: str = "v5"
    prompt: str = ""
    duration: int = 5
    img_id: int | None = None
    img_ids: list[int] | None = None
    sound_effect_switch: bool | None = None
    seed: int | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        problems.quality(payload.get("quality"))  # [official]
        problems.int_range("seed", payload.get("seed"), 0, vocab.SEED_MAX)  # [official]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Transition(_GenerationSwitches):
    endpoint: ClassVar[str] = "transition"
    aliases: ClassVar[Mapping[str, str]] = {
        "lip_sync_switch": "lip_sync_tts_switch",
        # tryAGI's hand-written spec spells them so; the kit accepts both
        "first_frame_img_id": "first_frame_img",
        "last_frame_img_id": "last_frame_img",
    }

    first_frame_img: int
    last_frame_img: int
    prompt: str
    model: str
    duration: int
    quality: str

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        generation(problems, payload)
        problems.prompt(payload.get("prompt"), disputed=True)  # V6 table 2048, ComfyUI 5000


# -- endpoints that work on an existing video ---------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class _FromVideo(PixVerseRequest):
    """Endpoints fed by a PixVerse ``source_video_id`` or an uploaded ``video_media_id``."""

    one_of: ClassVar[tuple[tuple[tuple[str, ...], ...], ...]] = (_VIDEO_SOURCE,)

    source_video_id: int | None = None
    video_media_id: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class LipSync(_FromVideo):
    endpoint: ClassVar[str] = "lip_sync"
    one_of: ClassVar[tuple[tuple[tuple[str, ...], ...], ...]] = (
        _VIDEO_SOURCE,
        (("audio_media_id",), ("lip_sync_tts_speaker_id", "lip_sync_tts_content")),
    )

    audio_media_id: int | None = None
    lip_sync_tts_speaker_id: str | None = None
    lip_sync_tts_content: str | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Restyle(_FromVideo):
    endpoint: ClassVar[str] = "restyle"
    one_of: ClassVar[tuple[tuple[tuple[str, ...], ...], ...]] = (
        _VIDEO_SOURCE,
        (("restyle_id",), ("restyle_prompt",)),
    )

    restyle_id: int | None = None
    restyle_prompt: str | None = None
    seed: int | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        problems.prompt_length("restyle_prompt", payload.get("restyle_prompt"),  # [official]
                               vocab.LONG_PROMPT_CHARS)
        problems.int_range("seed", payload.get("seed"), 0, vocab.SEED_MAX)  # [official]


def _keyframe(problems: Problems, value: Any) -> None:
    # [official] a frame index from 1; the upper bound is ours, so strict only
    problems.int_range("keyframe_id", value, 1, 10_000 if problems.strict else None)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SwapMask(_FromVideo):
    """Synchronous: PixVerse answers with the masks at once (and charges for them)."""

    endpoint: ClassVar[str] = "swap_mask"

    keyframe_id: int | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        _keyframe(problems, payload.get("keyframe_id"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Swap(_FromVideo):
    endpoint: ClassVar[str] = "swap"

    keyframe_id: int
    mask_id: str
    img_id: int
    quality: str

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        problems.quality(payload.get("quality"), vocab.EDIT_QUALITIES)  # [official]
        _keyframe(problems, payload.get("keyframe_id"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SoundEffect(_FromVideo):
    endpoint: ClassVar[str] = "sound_effect"
    # The kit names it prompt, the official spec sound_effect_content (sources disagree).
    aliases: ClassVar[Mapping[str, str]] = {"prompt": "sound_effect_content"}

    original_sound_switch: bool | None = None
    sound_effect_content: str | None = None
    seed: int | None = None


@dataclasses.dataclass(frozen=True, kw_only=True)
class Extend(_FromVideo):
    endpoint: ClassVar[str] = "extend"

    prompt: str
    model: str
    duration: int
    quality: str
    #: Optional per the official V6 table (the older spec required it: strict mode does).
    seed: int | None = None
    negative_prompt: str | None = None
    motion_mode: str | None = None
    style: str | None = None
    water_mark: bool | None = None
    generate_audio_switch: bool | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        if problems.strict:  # strict only: the older spec's "required" (§14)
            problems.require("seed", payload.get("seed"))
        generation(problems, payload, models=vocab.EXTEND_MODELS)  # [official] model list
        problems.prompt(payload.get("prompt"), disputed=True)  # V6 table 2048, ComfyUI 5000


@dataclasses.dataclass(frozen=True, kw_only=True)
class Mimic(_FromVideo):
    endpoint: ClassVar[str] = "mimic"

    img_id: int
    quality: str

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        # The how-to says no 1080p, the spec's description lists it (both official: they
        # disagree, so only strict mode stops at 720p).
        allowed = vocab.EDIT_QUALITIES if problems.strict else vocab.QUALITIES
        problems.quality(payload.get("quality"), allowed)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Modify(_FromVideo):
    endpoint: ClassVar[str] = "modify"

    prompt: str
    quality: str
    img_ids: list[int] | None = None
    mask_ids: list[str] | None = None
    keyframe_ids: int | None = None  # sic: a plural name for one frame index
    mask_urls: list[str] | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        problems.quality(payload.get("quality"), vocab.EDIT_QUALITIES)  # [official CN]
        problems.prompt(payload.get("prompt"))  # 5000 [official CN]
        for field in ("img_ids", "mask_ids"):  # at most 3 [official CN]
            problems.max_items(field, payload.get(field), 1, 3)
        if problems.strict:  # mask_urls [one source: the kit]
            problems.max_items("mask_urls", payload.get("mask_urls"), 1, 3)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Upscale(_FromVideo):
    """Semi-official endpoint (REFERENCE.md row 24; the official webhook page lists it); only
    the video source is known."""

    endpoint: ClassVar[str] = "upscale"
    confidence: ClassVar[Confidence] = "semi-official"


# -- multi-image generation ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fusion(PixVerseRequest):
    """Reference-to-video: name each image in the prompt as ``@ref_name`` followed by a space.

    ``reference_mode: "omni"`` is V6's omni mode [third-party, maintained: ComfyUI;
    experimental]: ``video_references`` instead of (or with) images, ``duration: 0`` and
    ``aspect_ratio: "auto"`` (PixVerse picks), and no ``image_references`` needed.
    """

    endpoint: ClassVar[str] = "fusion"

    prompt: str
    model: str
    duration: int
    quality: str
    aspect_ratio: str
    #: Required outside omni mode [official].
    image_references: list[FusionReference] | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    generate_audio_switch: bool | None = None
    reference_mode: str | None = None
    video_references: list[VideoReference] | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        omni = payload.get("reference_mode") == vocab.OMNI_REFERENCE_MODE
        if problems.strict:  # "omni" is the one mode any source names
            problems.choice("reference_mode", payload.get("reference_mode"),
                            (vocab.OMNI_REFERENCE_MODE,))
        generation(problems, payload, models=vocab.FUSION_MODELS, check_aspect_ratio=True,
                   extra_durations=(0,) if omni else (),
                   extra_aspect_ratios=("auto",) if omni else ())
        problems.prompt(payload.get("prompt"))  # 5000 [official CN]
        references = payload.get("image_references")
        if not omni:
            problems.require("image_references", references)  # [official]
        model = payload.get("model")
        if omni:  # up to 10 [third-party], so strict only
            if problems.strict:
                problems.max_items("image_references", references, 1, vocab.OMNI_MAX_REFERENCES)
        elif isinstance(model, str) and model in vocab.FUSION_MODELS:
            # 3 for v4.5/v5, 7 for later models [official CN + semi-official]
            problems.max_items("image_references", references, 1,
                               vocab.max_fusion_references(model))
        _image_references(problems, references or [])
        videos = payload.get("video_references")
        if videos is not None and not omni and problems.strict:
            problems.add("video_references", 'needs reference_mode "omni"')
        _video_references(problems, videos or [])


def _image_references(problems: Problems, references: list[Any]) -> None:
    names: set[str] = set()
    for i, ref in enumerate(references):
        where = f"image_references[{i}]"
        if not problems.check_type(where, ref, dict):
            continue
        for key, tp in (("type", str), ("img_id", int), ("ref_name", str)):  # all [official EN]
            if problems.require(f"{where}.{key}", ref.get(key)):
                problems.check_type(f"{where}.{key}", ref[key], tp)
        problems.choice(f"{where}.type", ref.get("type"), vocab.FUSION_REFERENCE_TYPES)
        name = ref.get("ref_name")
        if problems.strict and name in names:  # unique names [semi-official: MCP]
            problems.add(f"{where}.ref_name", f"{name!r} is used twice")
        if isinstance(name, str):
            names.add(name)


def _video_references(problems: Problems, references: list[Any]) -> None:
    # The item shape [third-party: ComfyUI]: a name and exactly one video id.
    for i, ref in enumerate(references):
        where = f"video_references[{i}]"
        if not problems.check_type(where, ref, dict):
            continue
        if problems.require(f"{where}.ref_name", ref.get("ref_name")):
            problems.check_type(f"{where}.ref_name", ref["ref_name"], str)
        problems.require_one_of(ref, [("video_media_id",), ("source_video_id",)],
                                where=f"{where}.")
        for key in ("video_media_id", "source_video_id"):
            if ref.get(key) is not None:
                problems.check_type(f"{where}.{key}", ref[key], int)


@dataclasses.dataclass(frozen=True, kw_only=True)
class MultiTransition(PixVerseRequest):
    endpoint: ClassVar[str] = "multi_transition"

    multi_transition: list[MultiTransitionFrame]
    model: str
    quality: str
    motion_mode: str | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        # All [official]: the model list, 2-7 frames, a duration on all but the last, 1-30 s.
        problems.choice("model", payload.get("model"), vocab.MULTI_TRANSITION_MODELS)
        problems.quality(payload.get("quality"))
        problems.choice("motion_mode", payload.get("motion_mode"), vocab.MOTION_MODES)
        frames = payload.get("multi_transition") or []
        problems.max_items("multi_transition", frames, 2, 7)
        total, durations_ok = 0, True
        for i, frame in enumerate(frames):
            where = f"multi_transition[{i}]"
            if not problems.check_type(where, frame, dict):
                continue
            if problems.require(f"{where}.img_id", frame.get("img_id")):
                problems.check_type(f"{where}.img_id", frame["img_id"], int)
            duration = frame.get("duration")
            if i < len(frames) - 1:
                durations_ok &= problems.require(f"{where}.duration", duration)
            if duration is not None:
                if problems.check_type(f"{where}.duration", duration, int):
                    total += duration
                else:
                    durations_ok = False
            if frame.get("prompt") is not None:
                problems.check_type(f"{where}.prompt", frame["prompt"], str)
        if frames and durations_ok:
            problems.int_range("multi_transition (total duration)", total, 1, 30)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImageTemplate(PixVerseRequest):
    """An image effect; the result is polled with ``GET /image/result/{image_id}``."""

    endpoint: ClassVar[str] = "image_template"

    img_ids: list[int | str]  # the EN spec says strings, the CN example ints: send ints
    template_id: int


#: Request class for each generation endpoint (the "kinds" pixhook submits).
REQUEST_TYPES: dict[str, type[PixVerseRequest]] = {
    cls.endpoint: cls
    for cls in (
        TextToVideo, ImageToVideo, TemplateVideo, Transition, LipSync, Fusion, MultiTransition,
        Restyle, SwapMask, Swap, SoundEffect, Extend, Mimic, Modify, ImageTemplate, Upscale,
        experimental.Avatar, experimental.Agent, experimental.MusicMV,
    )
}

#: The field through which an endpoint takes an existing PixVerse video.
VIDEO_INPUT_FIELD: str = "source_video_id"


def takes_video_input(kind: str) -> bool:
    """Whether a kind works on an existing PixVerse video (``source_video_id``): such kinds
    can follow another step in a chain (extend, sound effect, lip sync, restyle, upscale...)."""
    request_type = REQUEST_TYPES.get(kind)
    return request_type is not None and VIDEO_INPUT_FIELD in request_type.field_types()


__all__ = [
    "REQUEST_TYPES", "VIDEO_INPUT_FIELD", "Extend", "Fusion", "FusionReference", "ImageTemplate",
    "ImageToVideo", "LipSync", "Mimic", "Modify", "MultiTransition", "MultiTransitionFrame",
    "PixVerseRequest", "Restyle", "SoundEffect", "Swap", "SwapMask", "TemplateVideo",
    "TextToVideo", "Transition", "Upscale", "VideoReference", "takes_video_input",
]
