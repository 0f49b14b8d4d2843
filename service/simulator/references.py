"""The ids a request points at, resolved against what this API key owns (PixVerse ids are per
account), or the request refused:

* images (``img_id``, ``img_ids``, frames, fusion, multi-transition and agent references):
  400032;
* ``source_video_id`` (also inside fusion's ``video_references``): unknown or another key's ->
  500008; known but not succeeded (still generating, failed, moderated or deleted) -> 400017;
* ``video_media_id`` / ``audio_media_id`` (also inside ``video_references``): not uploaded ->
  500008; wrong media type -> 400017;
* ``mask_id`` / ``mask_ids``: not issued by ``/video/mask/selection`` to this key -> 500008;
* ``restyle_id`` must be in the served list, ``lip_sync_tts_speaker_id`` in the system list or
  this key's custom voices -> 400017.

Ids the experimental endpoints send as decimal strings (``"629000000000000001"``) count as the
number they spell. A reference item with a URL instead of an id (the agents' ``img_url``) is
not checked: the simulator has no internet to fetch it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

from service.simulator import catalog, pricing
from service.simulator.calls import Reject
from service.simulator.state import SUCCEEDED, Job, SimulatorState, Upload

#: List fields whose items name an image by ``img_id``.
_IMAGE_LISTS = ("image_references", "multi_transition", "img_references", "style_img_references")


@dataclasses.dataclass
class Sources:
    """What a request's references resolved to."""

    video_job: Job | None = None
    video_upload: Upload | None = None
    audio_upload: Upload | None = None

    @property
    def seconds(self) -> int:
        if self.video_job is not None:
            return self.video_job.duration
        return pricing.DEFAULT_SOURCE_SECONDS


def as_id(value: Any) -> Any:
    """A decimal string id as its int; anything else unchanged."""
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return value


def check_references(state: SimulatorState, api_key: str, payload: Mapping[str, Any]) -> Sources:
    """Resolve every id the request points at, or reject it (see the module docstring)."""
    for field, value in image_references(payload):
        upload = state.uploads.get(value) if isinstance(value, int) else None
        if upload is None or upload.api_key != api_key or upload.media_type != "image":
            raise Reject(400032, f"{field}: {value} is not an uploaded image")
    sources = Sources()
    if (video_id := payload.get("source_video_id")) is not None:
        sources.video_job = source_video(state, api_key, "source_video_id", video_id)
    for field, media_type in (("video_media_id", "video"), ("audio_media_id", "audio")):
        if (media_id := payload.get(field)) is None:
            continue
        upload = uploaded_media(state, api_key, field, media_id, media_type)
        if media_type == "video":
            sources.video_upload = upload
        else:
            sources.audio_upload = upload
    for i, ref in enumerate(payload.get("video_references") or ()):
        if not isinstance(ref, Mapping):
            continue
        if ref.get("source_video_id") is not None:
            source_video(state, api_key, f"video_references[{i}].source_video_id",
                         ref["source_video_id"])
        if ref.get("video_media_id") is not None:
            uploaded_media(state, api_key, f"video_references[{i}].video_media_id",
                           ref["video_media_id"], "video")
    mask_ids = [("mask_id", payload["mask_id"])] if payload.get("mask_id") is not None else []
    mask_ids += [(f"mask_ids[{i}]", m) for i, m in enumerate(payload.get("mask_ids") or ())]
    for field, mask_id in mask_ids:
        if state.masks.get(str(mask_id)) != api_key:
            raise Reject(500008,
                         f"{field}: no mask {mask_id!r} (get one from /video/mask/selection)")
    restyle_id = payload.get("restyle_id")
    if restyle_id is not None and restyle_id not in catalog.RESTYLE_IDS:
        raise Reject(400017, f"restyle_id: {restyle_id} is not in /video/restyle/list")
    speaker = payload.get("lip_sync_tts_speaker_id")
    if speaker is not None and not speaker_known(state, api_key, speaker):
        raise Reject(400017, f"lip_sync_tts_speaker_id: {speaker!r} is not in "
                             "/video/lip_sync/tts_list or this account's custom voices")
    return sources


def source_video(state: SimulatorState, api_key: str, field: str, value: Any) -> Job:
    video_id = as_id(value)
    job = state.jobs.get(video_id) if isinstance(video_id, int) else None
    if job is None or job.api_key != api_key or job.result_kind != "video":
        raise Reject(500008, f"{field}: no video {value}")
    if job.status != SUCCEEDED:
        raise Reject(400017, f"{field}: video {value} has status {job.status}, not 1 (succeeded)")
    return job


def uploaded_media(state: SimulatorState, api_key: str, field: str, value: Any,
                   media_type: str) -> Upload:
    media_id = as_id(value)
    upload = state.uploads.get(media_id) if isinstance(media_id, int) else None
    if upload is None or upload.api_key != api_key or upload.media_type == "image":
        raise Reject(500008, f"{field}: no uploaded media {value}")
    if upload.media_type != media_type:
        raise Reject(400017, f"{field}: media {value} is {upload.media_type}, not {media_type}")
    return upload


def speaker_known(state: SimulatorState, api_key: str, speaker: Any) -> bool:
    custom = state.custom_speakers.get(str(speaker))
    return speaker in catalog.TTS_SPEAKER_IDS or (custom is not None and custom[0] == api_key)


def image_references(payload: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    """(field, img_id) for every image the request names by id."""
    for field in ("img_id", "first_frame_img", "last_frame_img"):
        if payload.get(field) is not None:
            yield field, as_id(payload[field])
    for i, value in enumerate(payload.get("img_ids") or ()):
        yield f"img_ids[{i}]", as_id(value)
    for list_field in _IMAGE_LISTS:
        for i, item in enumerate(payload.get(list_field) or ()):
            if isinstance(item, Mapping) and ("img_id" in item or list_field in (
                    "image_references", "multi_transition")):
                yield f"{list_field}[{i}].img_id", as_id(item.get("img_id"))
