"""Typed views of PixVerse's ``Resp`` payloads. Each keeps the full ``raw`` dict as well,
since PixVerse adds fields over time and several are only semi-documented."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from service.pixverse.vocab import VideoStatus


def _int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    return int(value)


def _optional_int(value: Any) -> int | None:
    """An informative number PixVerse may send or not, in any shape: never an error."""
    try:
        return _int(value)
    except (TypeError, ValueError):
        return None


@dataclasses.dataclass(frozen=True)
class Submission:
    """What a generation call returns: the job's id, the price if echoed, and the trace id."""

    trace_id: str
    video_id: int | None = None
    image_id: int | None = None
    credits: int | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def job_id(self) -> int:
        """The id to poll or to match webhooks with (video or image)."""
        value = self.video_id if self.video_id is not None else self.image_id
        if value is None:
            raise ValueError("PixVerse returned neither video_id nor image_id")
        return value

    @classmethod
    def from_resp(cls, resp: Mapping[str, Any], trace_id: str) -> Submission:
        # Optional on every create answer (§14); mimic says "credit".
        credits = resp.get("credits", resp.get("credit"))
        return cls(trace_id=trace_id, video_id=_int(resp.get("video_id")),
                   image_id=_int(resp.get("image_id")), credits=_optional_int(credits),
                   raw=dict(resp))


@dataclasses.dataclass(frozen=True)
class VideoResult:
    """``GET /video/result/{id}``: a video job's current record."""

    id: int
    status: int
    url: str = ""
    size: int | None = None
    credits: int | None = None
    has_audio: bool | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @property
    def video_status(self) -> VideoStatus | None:
        """The status as an enum, or None for a code PixVerse has not documented."""
        try:
            return VideoStatus(self.status)
        except ValueError:
            return None

    @classmethod
    def from_resp(cls, resp: Mapping[str, Any]) -> VideoResult:
        return cls(id=int(resp["id"]), status=int(resp["status"]), url=resp.get("url") or "",
                   size=_int(resp.get("size")), credits=_int(resp.get("credits")),
                   has_audio=resp.get("has_audio"), raw=dict(resp))


@dataclasses.dataclass(frozen=True)
class ImageResult:
    """``GET /image/result/{image_id}``: an image job's current record."""

    image_id: int
    status: int
    url: str = ""
    credits: int | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_resp(cls, resp: Mapping[str, Any]) -> ImageResult:
        return cls(image_id=int(resp["image_id"]), status=int(resp["status"]),
                   url=resp.get("url") or "", credits=_int(resp.get("credits")), raw=dict(resp))


@dataclasses.dataclass(frozen=True)
class UploadedImage:
    img_id: int
    img_url: str

    @classmethod
    def from_resp(cls, resp: Mapping[str, Any]) -> UploadedImage:
        return cls(img_id=int(resp["img_id"]), img_url=resp.get("img_url") or "")


@dataclasses.dataclass(frozen=True)
class UploadedMedia:
    media_id: int
    media_type: str  # "video" or "audio"
    url: str
    #: Pixel size of an uploaded video, when PixVerse says (ComfyUI models it; optional).
    width: int | None = None
    height: int | None = None

    @classmethod
    def from_resp(cls, resp: Mapping[str, Any]) -> UploadedMedia:
        return cls(media_id=int(resp["media_id"]), media_type=resp.get("media_type") or "",
                   url=resp.get("url") or "", width=_optional_int(resp.get("width")),
                   height=_optional_int(resp.get("height")))


@dataclasses.dataclass(frozen=True)
class Balance:
    account_id: int
    credit_monthly: int
    credit_package: int

    @property
    def total(self) -> int:
        return self.credit_monthly + self.credit_package

    @classmethod
    def from_resp(cls, resp: Mapping[str, Any]) -> Balance:
        return cls(account_id=int(resp["account_id"]), credit_monthly=int(resp["credit_monthly"]),
                   credit_package=int(resp["credit_package"]))


@dataclasses.dataclass(frozen=True)
class Mask:
    mask_id: str  # a string, unlike every other PixVerse id
    mask_name: str
    mask_url: str


@dataclasses.dataclass(frozen=True)
class SwapMaskResult:
    """``POST /video/mask/selection``: answered at once, no job to wait for."""

    keyframe_id: int
    keyframe_url: str
    credits: int | None
    masks: tuple[Mask, ...]

    @classmethod
    def from_resp(cls, resp: Mapping[str, Any]) -> SwapMaskResult:
        masks = tuple(
            Mask(mask_id=str(m["mask_id"]), mask_name=m.get("mask_name", ""),
                 mask_url=m.get("mask_url", ""))
            for m in resp.get("mask_info") or ()
        )
        return cls(keyframe_id=int(resp.get("keyframe_id") or 1),
                   keyframe_url=resp.get("keyframe_url") or "",
                   credits=_int(resp.get("credits")), masks=masks)


@dataclasses.dataclass(frozen=True)
class Page:
    """A page of a list endpoint. Item shapes are not all published, so items stay dicts."""

    total: int | None
    items: tuple[Mapping[str, Any], ...]
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_resp(cls, resp: Any, items_key: str) -> Page:
        if not isinstance(resp, Mapping):
            return cls(total=None, items=(), raw={})
        items = resp.get(items_key) or ()
        return cls(total=_int(resp.get("total")), items=tuple(items), raw=dict(resp))


@dataclasses.dataclass(frozen=True)
class TtsSpeaker:
    """A custom TTS voice (``POST /video/tts_speaker``; experimental)."""

    speaker_id: str
    name: str
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_resp(cls, resp: Any, name: str) -> TtsSpeaker:
        data = resp if isinstance(resp, Mapping) else {}
        return cls(speaker_id=str(data.get("speaker_id") or ""), name=data.get("name") or name,
                   raw=dict(data))


@dataclasses.dataclass(frozen=True)
class UsagePage:
    """``POST /account/billing/usage-detail`` (experimental): the item shape is unpublished,
    so items stay dicts; pass ``next_cursor`` back while ``has_more``."""

    items: tuple[Mapping[str, Any], ...]
    next_cursor: str
    has_more: bool
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_resp(cls, resp: Any) -> UsagePage:
        data = resp if isinstance(resp, Mapping) else {}
        return cls(items=tuple(data.get("items") or ()),
                   next_cursor=str(data.get("next_cursor") or ""),
                   has_more=data.get("has_more") is True, raw=dict(data))
