"""Request bodies as PixVerse's published clients and docs show them: REFERENCE.md's examples
(§5), the calls §14 describes (PixVerse MCP, ComfyUI, resellers) and the semi-official kit's
payload examples for the experimental endpoints. Only the ids are placeholders (:class:`Ref`),
since the simulator checks that every id is one it issued to the caller; every other field is
as published.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from service.pixverse import PixVerseClient, models
from service.simulator import media
from tests.contract.conftest import PNG


@dataclasses.dataclass(frozen=True)
class Ref:
    """An id the simulator issued: ``role`` (img, video_media, audio_media, source, mask) and
    which one; ``text`` for the kit, which sends ids as decimal strings."""

    role: str
    index: int = 0
    text: bool = False


@dataclasses.dataclass(frozen=True)
class Published:
    name: str
    kind: str
    body: dict[str, Any]
    source: str
    #: The status it ends in (1 unless the example is about something else).
    final_status: int = 1


IMG, IMG2, IMG3 = Ref("img"), Ref("img", 1), Ref("img", 2)
SOURCE, VIDEO_MEDIA, AUDIO, MASK = Ref("source"), Ref("video_media"), Ref("audio_media"), \
    Ref("mask")

PUBLISHED: list[Published] = [
    # -- REFERENCE.md §5, the examples --------------------------------------------------------
    Published("5.1 text-to-video", "text_to_video", {
        "model": "v6", "prompt": "A paper lantern drifts over a misty lake at dawn, slow dolly-in",
        "negative_prompt": "blurry, text", "aspect_ratio": "21:9", "duration": 8,
        "quality": "720p", "generate_audio_switch": True, "generate_multi_clip_switch": False,
        "seed": 424242}, "REFERENCE.md 5.1"),
    Published("5.2 image-to-video", "image_to_video", {
        "model": "c1", "img_id": IMG,
        "prompt": "The knight draws her sword as sparks fly, handheld camera", "duration": 6,
        "quality": "1080p", "generate_audio_switch": False, "seed": 7}, "REFERENCE.md 5.2"),
    Published("5.3 template", "template_video", {
        "template_id": 302325299692608, "img_id": IMG, "prompt": "", "model": "v6",
        "duration": 5, "quality": "540p"}, "REFERENCE.md 5.3"),
    Published("5.4 transition", "transition", {
        "model": "v6", "prompt": "the caterpillar becomes a butterfly", "first_frame_img": IMG,
        "last_frame_img": IMG2, "duration": 5, "quality": "540p", "seed": 937433858},
        "REFERENCE.md 5.4"),
    Published("5.5 lip sync", "lip_sync", {
        "video_media_id": VIDEO_MEDIA, "lip_sync_tts_speaker_id": "8",
        "lip_sync_tts_content": "Welcome back! Here is today's forecast."}, "REFERENCE.md 5.5"),
    Published("5.7 fusion", "fusion", {
        "image_references": [{"type": "subject", "img_id": IMG, "ref_name": "dog"},
                             {"type": "background", "img_id": IMG2, "ref_name": "room"}],
        "prompt": "@dog chases a ball across @room", "model": "v6", "duration": 5,
        "quality": "720p", "aspect_ratio": "16:9", "seed": 123456789}, "REFERENCE.md 5.7"),
    Published("5.8 multi-transition", "multi_transition", {
        "multi_transition": [{"img_id": IMG, "duration": 3, "prompt": "sunrise"},
                             {"img_id": IMG2, "duration": 4}, {"img_id": IMG3}],
        "model": "v5", "quality": "540p"}, "REFERENCE.md 5.8"),
    Published("5.9 restyle", "restyle", {
        "source_video_id": SOURCE, "restyle_id": 17, "seed": 937433858}, "REFERENCE.md 5.9"),
    Published("5.12 swap", "swap", {
        "source_video_id": SOURCE, "keyframe_id": 1, "mask_id": MASK, "img_id": IMG,
        "quality": "540p"}, "REFERENCE.md 5.12"),
    Published("5.13 sound effect", "sound_effect", {
        "source_video_id": SOURCE, "original_sound_switch": True,
        "sound_effect_content": "rain on a tin roof, distant thunder"}, "REFERENCE.md 5.13"),
    Published("5.14 extend", "extend", {
        "source_video_id": SOURCE, "prompt": "the camera rises above the clouds", "model": "v6",
        "duration": 5, "quality": "720p", "seed": 123123}, "REFERENCE.md 5.14"),
    Published("5.17 modify", "modify", {
        "video_media_id": VIDEO_MEDIA, "prompt": "@selection0 is replaced by @img0",
        "img_ids": [IMG], "mask_ids": [MASK], "keyframe_ids": 1, "quality": "540p"},
        "REFERENCE.md 5.17"),
    Published("5.18 image template", "image_template", {
        "img_ids": [IMG], "template_id": 377378608924544}, "REFERENCE.md 5.18"),
    # -- §14: what PixVerse's own client and others send ----------------------------------------
    Published("MCP text-to-video (v5, motion_mode normal, its extra fields)", "text_to_video", {
        "prompt": "a lantern over a lake", "model": "v5", "duration": 5, "quality": "540p",
        "aspect_ratio": "16:9", "motion_mode": "normal", "water_mark": False, "play_bgm": False,
        "sound_effect_switch": True, "sound_mode": "default"}, "§14: PixVerse MCP"),
    Published("MCP image-to-video (v5, motion_mode normal)", "image_to_video", {
        "prompt": "ripples spread", "img_id": IMG, "model": "v5", "duration": 5,
        "quality": "540p", "motion_mode": "normal", "water_mark": False}, "§14: PixVerse MCP"),
    Published("MCP transition (v5, motion_mode normal)", "transition", {
        "prompt": "day to night", "first_frame_img": IMG, "last_frame_img": IMG2,
        "model": "v5", "duration": 5, "quality": "540p", "motion_mode": "normal"},
        "§14: PixVerse MCP"),
    Published("MCP extend (v5, motion_mode normal, no seed)", "extend", {
        "source_video_id": SOURCE, "prompt": "keep going", "model": "v5", "duration": 5,
        "quality": "540p", "motion_mode": "normal"}, "§14: PixVerse MCP; official V6 table"),
    Published("v5 at 1080p for 8 s", "text_to_video", {
        "prompt": "a lantern over a lake", "model": "v5", "duration": 8, "quality": "1080p",
        "aspect_ratio": "16:9"}, "§14: official pricing page"),
    Published("style realistic", "text_to_video", {
        "prompt": "a lantern over a lake", "model": "v6", "duration": 5, "quality": "540p",
        "aspect_ratio": "16:9", "style": "realistic"}, "§14: MCP and ComfyUI style lists"),
    Published("v6 image-to-video prompt of 5000 characters", "image_to_video", {
        "prompt": "a lantern drifting " * 250 + "x" * 250, "img_id": IMG, "model": "v6",
        "duration": 5, "quality": "540p"}, "§14: ComfyUI"),
    Published("reseller thinking_type", "text_to_video", {
        "prompt": "a lantern over a lake", "model": "v6", "duration": 5, "quality": "540p",
        "aspect_ratio": "16:9", "thinking_type": "auto"}, "§14: resellers"),
    Published("ComfyUI V6 fusion omni", "fusion", {
        "prompt": "@clip in watercolour", "model": "v6", "duration": 0, "quality": "720p",
        "aspect_ratio": "auto", "reference_mode": "omni",
        "video_references": [{"ref_name": "clip", "video_media_id": VIDEO_MEDIA}]},
        "§14: ComfyUI"),
    # -- the kit's payload examples (semi-official; ids as it sends them) ---------------------
    Published("kit motion control", "mimic", {
        "source_video_id": SOURCE, "img_id": IMG, "quality": "720p"}, "kit payload examples"),
    Published("kit sound effect (prompt)", "sound_effect", {
        "source_video_id": SOURCE, "prompt": "Gentle rain and distant thunder."},
        "kit payload examples"),
    Published("kit upscale", "upscale", {"source_video_id": SOURCE}, "kit payload examples"),
    Published("kit avatar", "avatar", {
        "img_id": Ref("img", text=True), "quality": "720p",
        "audio_media_id": Ref("audio_media", text=True)}, "kit payload examples"),
    Published("kit avatar with TTS", "avatar", {
        "img_id": Ref("img", text=True), "quality": "720p", "lip_sync_tts_speaker_id": "7",
        "lip_sync_tts_content": "Here is the latest update."}, "kit payload examples"),
    Published("kit viral recreation agent", "agent", {
        "agent_id": "414562414124109", "prompt": "Recreate the pacing.", "quality": "720p",
        "img_references": [{"img_url": "https://cdn.example.test/reference.png"}],
        "video_references": [{"video_url": "https://cdn.example.test/reference.mp4"}]},
        "kit payload examples"),
    Published("kit music MV", "music_mv", {
        "mv_agent_type": "vibe_mv_v3_custom", "audio_media_id": Ref("audio_media", text=True),
        "img_references": [{"img_id": Ref("img", text=True), "ref_name": "Character Image"}],
        "music_style": "Pop", "mv_style": "Custom", "aspect_ratio": "16:9", "quality": "720p",
        "caption_switch": True, "lip_sync_switch": False, "seed": 42}, "kit test fixture"),
]


async def issue_ids(client: PixVerseClient, finish: Any) -> dict[str, list[Any]]:
    """The ids the bodies need, made through ``client``: three images, an uploaded video and
    song (verified, for the music video), a succeeded video (``finish(video_id)`` ends it)
    and a mask of it."""
    images = [(await client.upload_image(PNG, filename=f"frame{i}.png")).img_id
              for i in range(3)]
    video_media = (await client.upload_media(media.SAMPLE_MP4)).media_id
    song = (await client.upload_media(b"a" * 4000, filename="song.mp3")).media_id
    await client.verify_audio(song)
    source = (await client.text_to_video(models.TextToVideo(
        prompt="a source video", model="v5", duration=5, quality="540p",
        aspect_ratio="16:9"))).job_id
    await finish(source)
    masks = await client.swap_mask(models.SwapMask(source_video_id=source, keyframe_id=1))
    return {"img": images, "video_media": [video_media], "audio_media": [song],
            "source": [source], "mask": [masks.masks[0].mask_id]}


def resolve(value: Any, ids: Mapping[str, list[Any]]) -> Any:
    """``value`` with every :class:`Ref` replaced by the id it stands for."""
    if isinstance(value, Ref):
        found = ids[value.role][value.index]
        return str(found) if value.text else found
    if isinstance(value, dict):
        return {k: resolve(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ids) for v in value]
    return value
