"""Where each PixVerse endpoint lives, and what it returns (REFERENCE.md section 3)."""

from __future__ import annotations

import dataclasses
from typing import Final, Literal

from service.pixverse import models

ResultKind = Literal["video", "image", "upload", "info"]


@dataclasses.dataclass(frozen=True)
class Endpoint:
    name: str
    method: Literal["GET", "POST"]
    path: str  # relative to the base URL, e.g. "/video/text/generate"
    result_kind: ResultKind
    request_type: type[models.PixVerseRequest] | None = None

    @property
    def is_generation(self) -> bool:
        """Whether it starts an asynchronous job that ends with a status (and a webhook)."""
        return self.result_kind in ("video", "image")


def _post(cls: type[models.PixVerseRequest], path: str, kind: ResultKind = "video") -> Endpoint:
    return Endpoint(cls.endpoint, "POST", path, kind, cls)


ENDPOINTS: Final[dict[str, Endpoint]] = {
    e.name: e
    for e in (
        _post(models.TextToVideo, "/video/text/generate"),
        _post(models.ImageToVideo, "/video/img/generate"),
        _post(models.TemplateVideo, "/video/img/generate"),
        _post(models.Transition, "/video/transition/generate"),
        _post(models.LipSync, "/video/lip_sync/generate"),
        Endpoint("lip_sync_tts_list", "GET", "/video/lip_sync/tts_list", "info"),
        _post(models.Fusion, "/video/fusion/generate"),
        _post(models.MultiTransition, "/video/multi_transition/generate"),
        _post(models.Restyle, "/video/restyle/generate"),
        Endpoint("restyle_effect_list", "GET", "/video/restyle/list", "info"),
        _post(models.SwapMask, "/video/mask/selection", "info"),
        _post(models.Swap, "/video/swap/generate"),
        _post(models.SoundEffect, "/video/sound_effect/generate"),
        _post(models.Extend, "/video/extend/generate"),
        Endpoint("video_result", "GET", "/video/result/{id}", "info"),
        _post(models.Mimic, "/video/mimic/generate"),
        _post(models.Modify, "/video/modify/generate"),
        _post(models.ImageTemplate, "/image/template/generate", "image"),
        Endpoint("image_result", "GET", "/image/result/{image_id}", "info"),
        Endpoint("upload_image", "POST", "/image/upload", "upload"),
        Endpoint("upload_media", "POST", "/media/upload", "upload"),
        Endpoint("account_balance", "GET", "/account/balance", "info"),
        Endpoint("effects_template_list", "GET", "/video/effects/templates/list", "info"),
        _post(models.Upscale, "/video/upscale/generate"),
    )
}

#: The endpoints that start a job, keyed by the "kind" pixhook uses for a job.
GENERATION_KINDS: Final[tuple[str, ...]] = tuple(
    name for name, e in ENDPOINTS.items() if e.is_generation
)
