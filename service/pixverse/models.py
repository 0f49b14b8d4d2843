"""Typed PixVerse requests, one class per generation endpoint, checked when built.

    >>> TextToVideo(prompt="a lantern over a lake", model="v6", duration=5,
    ...             quality="540p", aspect_ratio="21:9").to_payload()["aspect_ratio"]
    '21:9'
    >>> TextToVideo(prompt="x", model="v5", duration=10, quality="540p", aspect_ratio="16:9")
    Traceback (most recent call last):
    ...
    service.pixverse.errors.InvalidRequest: duration: 10 s is not offered by v5 at 540p (allowed: 5, 8)

A class's fields are the endpoint's fields: those without a default are required, ``one_of``
lists groups where exactly one alternative must be given (``source_video_id`` or
``video_media_id``...), and :meth:`check_rules` holds the endpoint's vocabulary rules.
:meth:`PixVerseRequest.validate_payload` runs the same checks on a raw JSON object, which is
how the simulator validates what it receives.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypedDict

from service.pixverse import validation as check
from service.pixverse import vocab
from service.pixverse.errors import InvalidRequest

_VIDEO_SOURCE = (("source_video_id",), ("video_media_id",))


class FusionReference(TypedDict):
    type: str  # "subject" or "background"
    img_id: int
    ref_name: str


class MultiTransitionFrame(TypedDict, total=False):
    img_id: int
    duration: int  # required on every frame but the last
    prompt: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class PixVerseRequest:
    """Base of the typed requests. Subclasses set ``endpoint`` and declare fields."""

    #: Name of the endpoint in :data:`service.pixverse.endpoints.ENDPOINTS`.
    endpoint: ClassVar[str]
    #: Groups of alternatives: exactly one alternative of each group must be present.
    one_of: ClassVar[tuple[tuple[tuple[str, ...], ...], ...]] = ()
    #: Other spellings the server accepts for a field (older docs, other clients).
    aliases: ClassVar[Mapping[str, str]] = {}
    #: Required string fields that may legitimately be empty.
    may_be_empty: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        self.validate_payload(self.to_payload())

    def to_payload(self) -> dict[str, Any]:
        """The JSON body: absent optional fields are left out rather than sent as null."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        """Build from a plain dict (an API or CLI caller's params); unknown keys are errors."""
        params = cls.normalise(params)
        known = cls.field_types()
        unknown = sorted(set(params) - set(known))
        if unknown:
            raise InvalidRequest(unknown[0], f"is not a field of {cls.endpoint}",
                                 allowed=tuple(sorted(known)))
        missing = [name for name in cls.required_fields() if name not in params]
        if missing:
            raise InvalidRequest(missing[0], "is required", err_code=check.MISSING)
        for name, value in params.items():
            check.check_type(name, value, known[name])
        return cls(**params)

    @classmethod
    def normalise(cls, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Rename aliases to the preferred spelling and drop nulls."""
        result: dict[str, Any] = {}
        for key, value in payload.items():
            if value is not None:
                result.setdefault(cls.aliases.get(key, key), value)
        return result

    @classmethod
    def validate_payload(cls, payload: Mapping[str, Any]) -> None:
        """All checks on a JSON object; unknown fields are ignored, as PixVerse does."""
        payload = cls.normalise(payload)
        types_ = cls.field_types()
        for name in cls.required_fields():
            value = payload.get(name)
            if name in cls.may_be_empty:
                if value is None:
                    raise InvalidRequest(name, "is required", err_code=check.MISSING)
            else:
                check.require(name, value)
        for name, value in payload.items():
            if name in types_:
                check.check_type(name, value, types_[name])
        for group in cls.one_of:
            check.require_one_of(payload, group)
        cls.check_rules(payload)

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any]) -> None:
        """Vocabulary rules beyond presence and type; overridden per endpoint."""

    @classmethod
    @functools.cache
    def field_types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: _strip_none(hints[f.name]) for f in dataclasses.fields(cls)}

    @classmethod
    @functools.cache
    def required_fields(cls) -> tuple[str, ...]:
        return tuple(
            f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )


def _strip_none(tp: Any) -> Any:
    args = typing.get_args(tp)
    if type(None) in args:
        rest = tuple(a for a in args if a is not type(None))
        return rest[0] if len(rest) == 1 else typing.Union[rest]  # noqa: UP007
    return tp


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
    def check_rules(cls, payload: Mapping[str, Any]) -> None:
        check.generation(payload, check_aspect_ratio=True)
        check.prompt_length("prompt", payload.get("prompt"), vocab.LONG_PROMPT_CHARS)


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
    def check_rules(cls, payload: Mapping[str, Any]) -> None:
        check.generation(payload)
        check.prompt_length("prompt", payload.get("prompt"), vocab.SHORT_PROMPT_CHARS)


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
    def check_rules(cls, payload: Mapping[str, Any]) -> None:
        check.quality(payload.get("quality"))
        check.int_range("seed", payload.get("seed"), 0, vocab.SEED_MAX)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Transition(_GenerationSwitches):
    endpoint: ClassVar[str] = "transition"
    aliases: ClassVar[Mapping[str, str]] = {
        "lip_sync_switch": "lip_sync_tts_switch",
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
    def check_rules(cls, payload: Mapping[str, Any]) -> None:
        check.generation(payload)
        check.prompt_length("prompt", payload.get("prompt"), vocab.SHORT_PROMPT_CHARS)


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
    def check_rules(cls, payload: Mapping[str, Any]) -> None:
        check.prompt_length("restyle_prompt", payload.get("restyle_prompt"),
                            vocab.LONG_PROMPT_CHARS)
        check.int_range("seed", payload.get("seed"), 0, vocab.SEED_MAX)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SwapMask(_FromVideo):
    """Synchronous: PixVerse answers with the masks at once (and charges for them)."""

    endpoint: ClassVar[str] = "swap_mask"

    keyframe_id: int | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any]) -> None:
        check.int_range("keyframe_id", payload.get("keyframe_id"), 1, 10_000)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Swap(_FromVideo):
    endpoint: ClassVar[str] = "swap"

    keyframe_id: int
    mask_id: str
    img_id: int
    quality: str

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any]) -> None:
        check.quality(payload.get("quality"), vocab.EDIT_QUALITIES)
        check.int_range("keyframe_id", payload.get("keyframe_id"), 1, 10_000)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SoundEffect(_FromVideo):
    endpoint: ClassVar[str] = "sound_effect"
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
    seed: int
    negative_prompt: str | None = None
    motion_mode: str | None = None
    style: str | None = None
    water_mark: bool | None = None
    generate_audio_switch: bool | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any]) -> None:
        check.generation(payload, models=vocab.EXTEND_MODELS)
        check.prompt_length("prompt", payload.get("prompt"), vocab.SHORT_PROMPT_CHARS)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Mimic(_FromVideo):
    endpoint: ClassVar[str] = "mimic"

    img_id: int
    quality: str

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any]) -> None:
        check.quality(payload.get("quality"), vocab.EDIT_QUALITIES)


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
    def check_rules(cls, payload: Mapping[str, Any]) -> None:
        check.quality(payload.get("quality"), vocab.EDIT_QUALITIES)
        check.prompt_length("prompt", payload.get("prompt"), vocab.LONG_PROMPT_CHARS)
        for field in ("img_ids", "mask_ids", "mask_urls"):
            check.max_items(field, payload.get(field), 1, 3)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Upscale(_FromVideo):
    """Semi-official endpoint (REFERENCE.md row 24); only the video source is known."""

    endpoint: ClassVar[str] = "upscale"


# -- multi-image generation ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fusion(PixVerseRequest):
    """Reference-to-video: name each image in the prompt as ``@ref_name`` followed by a space."""

    endpoint: ClassVar[str] = "fusion"

    image_references: list[FusionReference]
    prompt: str
    model: str
    duration: int
    quality: str
    aspect_ratio: str
    seed: int | None = None
    negative_prompt: str | None = None
    generate_audio_switch: bool | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any]) -> None:
        check.generation(payload, models=vocab.FUSION_MODELS, check_aspect_ratio=True)
        check.prompt_length("prompt", payload.get("prompt"), vocab.LONG_PROMPT_CHARS)
        references = payload["image_references"]
        check.max_items("image_references", references, 1,
                        vocab.max_fusion_references(payload["model"]))
        names: set[str] = set()
        for i, ref in enumerate(references):
            where = f"image_references[{i}]"
            for key, tp in (("type", str), ("img_id", int), ("ref_name", str)):
                check.require(f"{where}.{key}", ref.get(key))
                check.check_type(f"{where}.{key}", ref[key], tp)
            check.choice(f"{where}.type", ref["type"], vocab.FUSION_REFERENCE_TYPES)
            if ref["ref_name"] in names:
                raise InvalidRequest(f"{where}.ref_name", f"{ref['ref_name']!r} is used twice")
            names.add(ref["ref_name"])


@dataclasses.dataclass(frozen=True, kw_only=True)
class MultiTransition(PixVerseRequest):
    endpoint: ClassVar[str] = "multi_transition"

    multi_transition: list[MultiTransitionFrame]
    model: str
    quality: str
    motion_mode: str | None = None

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any]) -> None:
        check.choice("model", payload["model"], vocab.MULTI_TRANSITION_MODELS)
        check.quality(payload["quality"])
        check.choice("motion_mode", payload.get("motion_mode"), vocab.MOTION_MODES)
        frames = payload["multi_transition"]
        check.max_items("multi_transition", frames, 2, 7)
        total = 0
        for i, frame in enumerate(frames):
            where = f"multi_transition[{i}]"
            check.require(f"{where}.img_id", frame.get("img_id"))
            check.check_type(f"{where}.img_id", frame["img_id"], int)
            if i < len(frames) - 1:
                check.require(f"{where}.duration", frame.get("duration"))
            if frame.get("duration") is not None:
                check.check_type(f"{where}.duration", frame["duration"], int)
                total += frame["duration"]
            if frame.get("prompt") is not None:
                check.check_type(f"{where}.prompt", frame["prompt"], str)
        check.int_range("multi_transition (total duration)", total, 1, 30)


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
    )
}

#: The field through which an endpoint takes an existing PixVerse video.
VIDEO_INPUT_FIELD: str = "source_video_id"


def takes_video_input(kind: str) -> bool:
    """Whether a kind works on an existing PixVerse video (``source_video_id``): such kinds
    can follow another step in a chain (extend, sound effect, lip sync, restyle, upscale...)."""
    request_type = REQUEST_TYPES.get(kind)
    return request_type is not None and VIDEO_INPUT_FIELD in {
        field.name for field in dataclasses.fields(request_type)}
