"""Checks shared by the typed requests (client side) and the simulator (server side).

Every check raises :class:`InvalidRequest` naming the field, the allowed values when there is
a short list of them, and the ErrCode PixVerse answers with for that mistake: 400011 for a
missing field, 400013 for a wrong JSON type, 400017 for a bad value, 400018/400019 for an
over-long prompt or negative prompt.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Final

from service.pixverse import vocab
from service.pixverse.errors import InvalidRequest

MISSING: Final = 400011
WRONG_TYPE: Final = 400013
BAD_VALUE: Final = 400017
PROMPT_TOO_LONG: Final = 400018
NEGATIVE_PROMPT_TOO_LONG: Final = 400019


def type_name(tp: Any) -> str:
    """A JSON-ish name for an annotation, for error messages."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(arg) for arg in typing.get_args(tp) if arg is not type(None))
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"array of {type_name(item)}"
    if typing.is_typeddict(tp) or tp is dict:
        return "object"
    return {int: "integer", str: "string", bool: "boolean"}.get(tp, getattr(tp, "__name__", "?"))


def matches_type(value: Any, tp: Any) -> bool:
    """Whether a decoded JSON value fits an annotation (``bool`` is not an ``int`` here)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return True
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin in (typing.Union, types.UnionType):
        return any(matches_type(value, arg) for arg in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp)
        return isinstance(value, list) and all(matches_type(v, item) for v in value)
    if typing.is_typeddict(tp) or tp is dict or origin is dict:
        return isinstance(value, dict)
    if tp is type(None):
        return value is None
    raise TypeError(f"unsupported annotation {tp!r}")


def check_type(field: str, value: Any, tp: Any) -> None:
    if not matches_type(value, tp):
        raise InvalidRequest(field, f"must be {type_name(tp)}", err_code=WRONG_TYPE)


def is_present(value: Any) -> bool:
    """PixVerse treats absent, null and empty values alike (400011)."""
    return value is not None and value != "" and value != []


def require(field: str, value: Any) -> None:
    if not is_present(value):
        raise InvalidRequest(field, "is required", err_code=MISSING)


def require_one_of(payload: Mapping[str, Any], alternatives: Sequence[tuple[str, ...]]) -> None:
    """Exactly one alternative (a tuple of fields that go together) must be fully present."""
    label = " | ".join("+".join(alt) for alt in alternatives)
    touched = [alt for alt in alternatives if any(is_present(payload.get(f)) for f in alt)]
    if not touched:
        raise InvalidRequest(label, "one of these is required", err_code=MISSING)
    if len(touched) > 1:
        raise InvalidRequest(label, "give exactly one of these, not several")
    for field in touched[0]:
        if not is_present(payload.get(field)):
            raise InvalidRequest(field, f"is required together with {'+'.join(touched[0])}",
                                 err_code=MISSING)


def choice(field: str, value: Any, allowed: Collection[Any]) -> None:
    if value is not None and value not in allowed:
        raise InvalidRequest(field, f"{value!r} is not allowed", allowed=tuple(allowed))


def int_range(field: str, value: int | None, low: int, high: int) -> None:
    if value is not None and not low <= value <= high:
        raise InvalidRequest(field, f"{value} is outside {low}..{high}")


def max_items(field: str, values: Sequence[Any] | None, low: int, high: int) -> None:
    if values is not None and not low <= len(values) <= high:
        raise InvalidRequest(field, f"must have {low} to {high} items, got {len(values)}")


def prompt_length(
    field: str, value: str | None, limit: int, *, err_code: int = PROMPT_TOO_LONG
) -> None:
    if value is not None and len(value) > limit:
        raise InvalidRequest(field, f"is {len(value)} characters; the limit is {limit}",
                             err_code=err_code)


def quality(value: str | None, allowed: Sequence[str] = vocab.QUALITIES) -> None:
    choice("quality", value, allowed)


def generation(
    payload: Mapping[str, Any],
    *,
    models: Sequence[str] = vocab.MODELS,
    check_aspect_ratio: bool = False,
    templated: bool = False,
) -> None:
    """The model-dependent rules of REFERENCE.md section 4.1, for any endpoint with a model."""
    choice("model", payload.get("model"), models)
    quality(payload.get("quality"))
    model = str(payload.get("model"))
    q = str(payload.get("quality"))
    duration = payload.get("duration")
    allowed = vocab.allowed_durations(model, q)
    if duration is not None and duration not in allowed:
        raise InvalidRequest("duration", f"{duration} s is not offered by {model} at {q}",
                             allowed=allowed)
    if check_aspect_ratio:
        choice("aspect_ratio", payload.get("aspect_ratio"), vocab.aspect_ratios_for(model))
    motion_mode = payload.get("motion_mode")
    if motion_mode is not None:
        choice("motion_mode", motion_mode, vocab.MOTION_MODES)
        if model not in ("v3.5", "v4", "v4.5"):
            raise InvalidRequest("motion_mode", f"is not supported by model {model}",
                                 allowed=("v3.5", "v4", "v4.5"))
        if motion_mode == "fast" and (duration != 5 or q == "1080p"):
            raise InvalidRequest("motion_mode", "'fast' needs duration 5 and quality below 1080p")
    choice("style", payload.get("style"), vocab.STYLES)
    camera = payload.get("camera_movement")
    if camera is not None:
        choice("camera_movement", camera, vocab.CAMERA_MOVEMENTS)
        if model not in vocab.CAMERA_MOVEMENT_MODELS:
            raise InvalidRequest("camera_movement", f"is not supported by model {model}",
                                 allowed=tuple(sorted(vocab.CAMERA_MOVEMENT_MODELS)))
        if payload.get("template_id") is not None:
            raise InvalidRequest("camera_movement", "cannot be combined with template_id")
    switch_rules = (
        ("generate_audio_switch", vocab.AUDIO_SWITCH_MODELS),
        ("generate_multi_clip_switch", vocab.MULTI_CLIP_MODELS),
    )
    for field, allowed_models in switch_rules:
        if payload.get(field) is True and model not in allowed_models:
            raise InvalidRequest(field, f"is not supported by model {model}",
                                 allowed=tuple(sorted(allowed_models)))
    legacy_ok = model in vocab.LEGACY_MODELS or templated or payload.get("template_id") is not None
    for field in ("sound_effect_switch", "lip_sync_tts_switch"):
        if payload.get(field) is True and not legacy_ok:
            raise InvalidRequest(field, f"is only for v5 and older (use generate_audio_switch "
                                        f"with {model})", allowed=tuple(sorted(vocab.LEGACY_MODELS)))
    int_range("seed", payload.get("seed"), 0, vocab.SEED_MAX)
    prompt_length("negative_prompt", payload.get("negative_prompt"), vocab.SHORT_PROMPT_CHARS,
                  err_code=NEGATIVE_PROMPT_TOO_LONG)
