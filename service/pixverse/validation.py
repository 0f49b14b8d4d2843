"""Checks shared by the typed requests (client side) and the simulator (server side).

**Policy** (REFERENCE.md §14): refuse locally only what an [official] source forbids; where
sources disagree or are silent, accept and let PixVerse decide. Every rule below names the
source it rests on. The older, stricter rules (and the value rules of the experimental
endpoints, which rest on one weak source) run only in **strict** mode:
``PIXHOOK_PIXVERSE_STRICT`` for pixhook, ``SimulatorConfig.strict_validation`` for the
simulator. An endpoint's fields, which of them are required and their JSON types come from the
source that describes the endpoint and are always checked.

A :class:`Problems` collects every problem of a request before anything is raised, so one
:class:`InvalidRequest` names every bad field at once (``exc.errors``; ``exc.field`` is the
first). Each problem carries the ErrCode PixVerse answers with for that mistake: 400011 for a
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
    if typing.is_typeddict(tp) or tp is dict or origin is dict:
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


def is_present(value: Any) -> bool:
    """PixVerse treats absent, null and empty values alike (400011)."""
    return value is not None and value != "" and value != []


class Problems:
    """Every problem found in one request; :meth:`raise_if_any` raises them together.

    Each check returns whether it passed, so a rule that depends on a field can skip itself
    when that field is already wrong (one problem per mistake, not a cascade).
    """

    def __init__(self, *, strict: bool = False) -> None:
        #: Also apply the rules that rest on weaker or disputed sources (see the module doc).
        self.strict = strict
        self.found: list[InvalidRequest] = []

    def __bool__(self) -> bool:
        return bool(self.found)

    def add(self, field: str, message: str, *, allowed: Collection[Any] | None = None,
            err_code: int = BAD_VALUE) -> bool:
        """Record a problem; returns False so a check can ``return self.add(...)``."""
        self.found.append(InvalidRequest(field, message, err_code=err_code,
                                         allowed=tuple(allowed) if allowed else None))
        return False

    def has(self, field: str) -> bool:
        """Whether a problem already names ``field``."""
        return any(problem.field == field for problem in self.found)

    def raise_if_any(self) -> None:
        if self.found:
            raise InvalidRequest.combine(self.found)

    # -- the checks ---------------------------------------------------------------------------

    def check_type(self, field: str, value: Any, tp: Any) -> bool:
        if matches_type(value, tp):
            return True
        return self.add(field, f"must be {type_name(tp)}", err_code=WRONG_TYPE)

    def require(self, field: str, value: Any) -> bool:
        return is_present(value) or self.add(field, "is required", err_code=MISSING)

    def require_one_of(self, payload: Mapping[str, Any],
                       alternatives: Sequence[tuple[str, ...]], *, where: str = "") -> bool:
        """Exactly one alternative (a tuple of fields that go together) must be fully present;
        ``where`` prefixes the field names in problems (``video_references[0].``)."""
        label = where + " | ".join("+".join(alt) for alt in alternatives)
        touched = [alt for alt in alternatives if any(is_present(payload.get(f)) for f in alt)]
        if not touched:
            return self.add(label, "one of these is required", err_code=MISSING)
        if len(touched) > 1:
            return self.add(label, "give exactly one of these, not several")
        missing = [f for f in touched[0] if not is_present(payload.get(f))]
        for field in missing:
            self.add(where + field, f"is required together with {'+'.join(touched[0])}",
                     err_code=MISSING)
        return not missing

    def choice(self, field: str, value: Any, allowed: Collection[Any]) -> bool:
        if value is None or value in allowed:
            return True
        return self.add(field, f"{value!r} is not allowed", allowed=allowed)

    def int_range(self, field: str, value: Any, low: int, high: int | None = None) -> bool:
        if not isinstance(value, int) or isinstance(value, bool):
            return True  # absent, or already reported as the wrong type
        if value < low or (high is not None and value > high):
            bounds = f"{low}..{high}" if high is not None else f"at least {low}"
            return self.add(field, f"{value} is outside {bounds}")
        return True

    def max_items(self, field: str, values: Any, low: int, high: int) -> bool:
        if isinstance(values, list) and not low <= len(values) <= high:
            return self.add(field, f"must have {low} to {high} items, got {len(values)}")
        return True

    def prompt_length(self, field: str, value: Any, limit: int, *,
                      err_code: int = PROMPT_TOO_LONG) -> bool:
        if isinstance(value, str) and len(value) > limit:
            return self.add(field, f"is {len(value)} characters; the limit is {limit}",
                            err_code=err_code)
        return True

    def prompt(self, value: Any, *, disputed: bool = False) -> bool:
        """``prompt`` up to 5000 characters [official: newer spec]. ``disputed``: the older
        spec and the V6 table say 2048 for this endpoint, ComfyUI 5000 (§14), so 2048 is a
        strict-only limit."""
        strict_limit = disputed and self.strict
        limit = vocab.SHORT_PROMPT_CHARS if strict_limit else vocab.LONG_PROMPT_CHARS
        return self.prompt_length("prompt", value, limit)

    def quality(self, value: Any, allowed: Sequence[str] = vocab.QUALITIES) -> bool:
        return self.choice("quality", value, allowed)


def generation(
    p: Problems,
    payload: Mapping[str, Any],
    *,
    models: Sequence[str] = vocab.MODELS,
    check_aspect_ratio: bool = False,
    extra_durations: Collection[int] = (),
    extra_aspect_ratios: Collection[str] = (),
) -> None:
    """The model-dependent rules of REFERENCE.md §4.1 (as §14 corrects them), for any endpoint
    with a model. ``extra_*`` widen a vocabulary (fusion's omni mode)."""
    model, quality, duration = payload.get("model"), payload.get("quality"), payload.get("duration")
    model_ok = p.choice("model", model, models) and isinstance(model, str)  # [official]
    quality_ok = p.quality(quality) and isinstance(quality, str)  # [official]
    model, quality = str(model), str(quality)
    if model_ok and quality_ok and isinstance(duration, int) and duration not in extra_durations:
        # [official] per model and quality; v5 1080p 8 s only in strict mode (§14)
        allowed = vocab.allowed_durations(model, quality, strict=p.strict)
        if duration not in allowed:
            p.add("duration", f"{duration} s is not offered by {model} at {quality}",
                  allowed=allowed)
    if check_aspect_ratio and model_ok:  # [official] §4.2: v6 and c1 add 2:3, 3:2, 21:9
        ratios = (*vocab.aspect_ratios_for(model), *extra_aspect_ratios)
        p.choice("aspect_ratio", payload.get("aspect_ratio"), ratios)
    motion_mode = payload.get("motion_mode")
    if p.choice("motion_mode", motion_mode, vocab.MOTION_MODES) and motion_mode is not None \
            and model_ok:
        if motion_mode == "fast" and model not in vocab.FAST_MOTION_MODELS:
            # [official] fast is unsupported from v5 up (PixVerse's own checker agrees)
            p.add("motion_mode", f"'fast' is not supported by model {model}",
                  allowed=vocab.FAST_MOTION_MODELS)
        elif motion_mode == "fast" and (duration != 5 or quality == "1080p"):
            # [official] fast only at 5 s and below 1080p
            p.add("motion_mode", "'fast' needs duration 5 and quality below 1080p")
        elif p.strict and model not in vocab.FAST_MOTION_MODELS:
            # strict only: the older "not for v5+" rule; PixVerse's own client sends
            # "normal" with v5 on every call (§14)
            p.add("motion_mode", f"is not supported by model {model}",
                  allowed=vocab.FAST_MOTION_MODELS)
    # [official] list; "realistic" [semi-official + third-party] accepted unless strict (§14)
    styles = vocab.STYLES if p.strict else (*vocab.STYLES, *vocab.EXTRA_STYLES)
    p.choice("style", payload.get("style"), styles)
    camera = payload.get("camera_movement")
    if camera is not None:
        if p.strict:
            # strict only: our copy of the official list is cut short; the rest is PixVerse
            # MCP's enum [semi-official], and MCP forbids it with template_id [semi-official]
            p.choice("camera_movement", camera, vocab.CAMERA_MOVEMENTS)
            if payload.get("template_id") is not None:
                p.add("camera_movement", "cannot be combined with template_id")
        if model_ok and model not in vocab.CAMERA_MOVEMENT_MODELS:  # [official] v4/v4.5 only
            p.add("camera_movement", f"is not supported by model {model}",
                  allowed=sorted(vocab.CAMERA_MOVEMENT_MODELS))
    switch_rules = (  # [official] §4.1
        ("generate_audio_switch", vocab.AUDIO_SWITCH_MODELS),
        ("generate_multi_clip_switch", vocab.MULTI_CLIP_MODELS),
    )
    for field, allowed_models in switch_rules:
        if payload.get(field) is True and model_ok and model not in allowed_models:
            p.add(field, f"is not supported by model {model}", allowed=sorted(allowed_models))
    # [official] v5 and older, or with a template
    legacy_ok = model in vocab.LEGACY_MODELS or payload.get("template_id") is not None
    for field in ("sound_effect_switch", "lip_sync_tts_switch"):
        if payload.get(field) is True and model_ok and not legacy_ok:
            p.add(field, f"is only for v5 and older (use generate_audio_switch with {model})",
                  allowed=sorted(vocab.LEGACY_MODELS))
    p.int_range("seed", payload.get("seed"), 0, vocab.SEED_MAX)  # [official]
    p.prompt_length("negative_prompt", payload.get("negative_prompt"),  # [official]
                    vocab.SHORT_PROMPT_CHARS, err_code=NEGATIVE_PROMPT_TOO_LONG)
