"""Where each PixVerse endpoint lives, what it returns, and how sure we are it exists
(REFERENCE.md sections 3 and 14)."""

from __future__ import annotations

import dataclasses
from typing import Final, Literal

from service.pixverse import experimental, models
from service.pixverse.request import Confidence

ResultKind = Literal["video", "image", "upload", "info"]


@dataclasses.dataclass(frozen=True)
class Endpoint:
    name: str
    method: Literal["GET", "POST", "DELETE"]
    path: str  # relative to the base URL, e.g. "/video/text/generate"
    result_kind: ResultKind
    request_type: type[models.PixVerseRequest] | None = None
    #: REFERENCE.md's marker for the source the endpoint rests on.
    confidence: Confidence = "official"

    @property
    def is_generation(self) -> bool:
        """Whether it starts an asynchronous job that ends with a status (and a webhook)."""
        return self.result_kind in ("video", "image")

    @property
    def experimental(self) -> bool:
        """Resting on one weak source (its value rules run only in strict mode)."""
        return self.confidence in ("one source", "third-party")


def _post(cls: type[models.PixVerseRequest], path: str, kind: ResultKind = "video") -> Endpoint:
    return Endpoint(cls.endpoint, "POST", path, kind, cls, cls.confidence)


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
        Endpoint("effects_template_list", "GET", "/video/effects/templates/list", "info",
                 confidence="semi-official"),
        _post(models.Upscale, "/video/upscale/generate"),
        # Rows 25-28 and §14: one source each (experimental).
        _post(experimental.Avatar, "/video/avatar/generate"),
        _post(experimental.Agent, "/video/agent/generate"),
        _post(experimental.MusicMV, "/video/music_mv_agent/generate"),
        _post(experimental.AudioVerification, "/audio/verification", "info"),
        _post(experimental.TtsSpeakerCreate, "/video/tts_speaker", "info"),
        Endpoint("tts_speaker_list", "GET", "/video/tts_speaker", "info",
                 confidence="one source"),
        Endpoint("delete_tts_speaker", "DELETE", "/video/tts_speaker/{speaker_id}", "info",
                 confidence="one source"),
        _post(experimental.UsageDetail, "/account/billing/usage-detail", "info"),
    )
}

#: The endpoints that start a job, keyed by the "kind" pixhook uses for a job.
GENERATION_KINDS: Final[tuple[str, ...]] = tuple(
    name for name, e in ENDPOINTS.items() if e.is_generation
)
