"""The base of the typed PixVerse requests: fields, presence, types, unknown fields.

A request class's fields are the endpoint's fields: those without a default are required,
``one_of`` lists groups where exactly one alternative must be given (``source_video_id`` or
``video_media_id``...), and :meth:`PixVerseRequest.check_rules` holds the endpoint's value
rules (see :mod:`service.pixverse.validation` for the policy and its strict mode).

Fields pixhook does not know are not errors (REFERENCE.md §14: PixVerse adds fields often):
:meth:`PixVerseRequest.from_params` keeps them in ``extra``, and :meth:`to_payload` sends them
verbatim after the known ones. Only strict mode refuses them.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Self

from service.pixverse.errors import InvalidRequest
from service.pixverse.validation import MISSING, Problems

#: The confidence of the source an endpoint rests on, as REFERENCE.md marks it.
Confidence = typing.Literal["official", "semi-official", "one source", "third-party"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class PixVerseRequest:
    """Base of the typed requests. Subclasses set ``endpoint`` and declare fields."""

    #: Name of the endpoint in :data:`service.pixverse.endpoints.ENDPOINTS`.
    endpoint: ClassVar[str]
    #: Where the endpoint is described (REFERENCE.md's markers).
    confidence: ClassVar[Confidence] = "official"
    #: Resting on one weak source: its value rules run only in strict mode.
    experimental: ClassVar[bool] = False
    #: Groups of alternatives: exactly one alternative of each group must be present.
    one_of: ClassVar[tuple[tuple[tuple[str, ...], ...], ...]] = ()
    #: Other spellings the server accepts for a field (older docs, other clients).
    aliases: ClassVar[Mapping[str, str]] = {}
    #: Required string fields that may legitimately be empty.
    may_be_empty: ClassVar[frozenset[str]] = frozenset()

    #: Fields pixhook does not know, sent verbatim after the known ones.
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        problems = self.problems(self.to_payload())
        for name in self.extra:
            if name in self.field_types() or name in self.aliases:
                problems.add(f"extra.{name}", f"is a field of {self.endpoint}; set it directly")
        problems.raise_if_any()

    def to_payload(self) -> dict[str, Any]:
        """The JSON body: absent optional fields are left out rather than sent as null, and
        unknown fields follow the known ones as given."""
        known = {name: getattr(self, name) for name in self.field_types()
                 if getattr(self, name) is not None}
        return {**known, **self.extra}

    @classmethod
    def from_params(cls, params: Mapping[str, Any], *, strict: bool = False) -> Self:
        """Build from a plain dict (an API or CLI caller's params), reporting every problem at
        once. Unknown keys go to ``extra``; ``strict`` refuses them instead."""
        payload = cls.normalise(params)
        problems = cls.problems(payload, strict=strict)
        unknown = cls.unknown_fields(payload)
        if strict:
            for name in unknown:
                problems.add(name, f"is not a field of {cls.endpoint}",
                             allowed=sorted(cls.field_types()))
        problems.raise_if_any()
        known = {k: v for k, v in payload.items() if k in cls.field_types()}
        return cls(**known, extra={name: payload[name] for name in unknown})

    @classmethod
    def unknown_fields(cls, params: Mapping[str, Any]) -> list[str]:
        """The keys of ``params`` this endpoint does not know (aliases count as known)."""
        known = cls.field_types()
        return [k for k in params if cls.aliases.get(k, k) not in known]

    @classmethod
    def normalise(cls, payload: Mapping[str, Any]) -> dict[str, Any]:
        """Rename aliases to the preferred spelling and drop known fields that are null
        (PixVerse treats null as absent); unknown fields stay exactly as given."""
        known = cls.field_types()
        result: dict[str, Any] = {}
        for key, value in payload.items():
            name = cls.aliases.get(key, key)
            if value is None and name in known:
                continue
            result.setdefault(name, value)
        return result

    @classmethod
    def validate_payload(cls, payload: Mapping[str, Any], *, strict: bool = False) -> None:
        """All checks on a JSON object, every problem in one exception; unknown fields are
        ignored, as PixVerse does."""
        cls.problems(payload, strict=strict).raise_if_any()

    @classmethod
    def problems(cls, payload: Mapping[str, Any], *, strict: bool = False) -> Problems:
        """Presence, types, one-of groups, then the value rules; unknown fields ignored."""
        payload = cls.normalise(payload)
        problems = Problems(strict=strict)
        types_ = cls.field_types()
        for name in cls.required_fields():
            value = payload.get(name)
            if name in cls.may_be_empty:
                if value is None:
                    problems.add(name, "is required", err_code=MISSING)
            else:
                problems.require(name, value)
        # The rules only see well-typed values, so a wrong type is reported once.
        typed = {name: value for name, value in payload.items()
                 if name in types_ and problems.check_type(name, value, types_[name])}
        for group in cls.one_of:
            problems.require_one_of(typed, group)
        if strict or not cls.experimental:
            cls.check_rules(typed, problems)
        return problems

    @classmethod
    def check_rules(cls, payload: Mapping[str, Any], problems: Problems) -> None:
        """Value rules beyond presence and type; overridden per endpoint. ``payload`` holds
        only the known, well-typed fields."""

    @classmethod
    @functools.cache
    def field_types(cls) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        return {f.name: _strip_none(hints[f.name]) for f in dataclasses.fields(cls)
                if f.name != "extra"}

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


__all__ = ["Confidence", "InvalidRequest", "PixVerseRequest"]
