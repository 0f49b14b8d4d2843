"""Local validation of typed requests: bad input fails before any network call, naming the
field and the allowed values, with the ErrCode PixVerse would answer."""

from __future__ import annotations

from typing import Any

import pytest

from service.pixverse import models
from service.pixverse.errors import InvalidRequest

T2V: dict[str, Any] = {"prompt": "a lantern", "model": "v6", "duration": 5, "quality": "540p",
                       "aspect_ratio": "16:9"}


def _fails(cls: type[models.PixVerseRequest], payload: dict[str, Any], *,
           strict: bool = False) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        cls.validate_payload(payload, strict=strict)
    return info.value


def test_valid_text_to_video_round_trips() -> None:
    request = models.TextToVideo(**T2V, seed=7, generate_audio_switch=True)
    assert request.to_payload() == {**T2V, "seed": 7, "generate_audio_switch": True}


@pytest.mark.parametrize(
    ("change", "field", "code", "allowed_contains"),
    [
        ({"model": "v7"}, "model", 400017, "v6"),
        ({"quality": "4k"}, "quality", 400017, "1080p"),
        ({"model": "v5", "duration": 10}, "duration", 400017, 8),
        ({"model": "v4", "quality": "1080p", "duration": 8}, "duration", 400017, 5),
        ({"model": "v5.5", "quality": "1080p", "duration": 10}, "duration", 400017, 8),
        ({"duration": 16}, "duration", 400017, 15),
        ({"model": "v5", "aspect_ratio": "21:9"}, "aspect_ratio", 400017, "9:16"),
        ({"duration": "5"}, "duration", 400013, None),
        ({"seed": True}, "seed", 400013, None),
        ({"seed": -1}, "seed", 400017, None),
        ({"prompt": ""}, "prompt", 400011, None),
        ({"prompt": "x" * 5001}, "prompt", 400018, None),
        ({"negative_prompt": "x" * 2049}, "negative_prompt", 400019, None),
        ({"motion_mode": "fast"}, "motion_mode", 400017, "v4"),
        ({"motion_mode": "slow"}, "motion_mode", 400017, "normal"),
        ({"model": "v4", "motion_mode": "fast", "duration": 8}, "motion_mode", 400017, None),
        ({"camera_movement": "zoom_in"}, "camera_movement", 400017, "v4.5"),
        ({"model": "v5", "generate_audio_switch": True}, "generate_audio_switch", 400017, "v6"),
        ({"model": "v5.6", "generate_multi_clip_switch": True}, "generate_multi_clip_switch",
         400017, "v5.5"),
        ({"sound_effect_switch": True}, "sound_effect_switch", 400017, "v5"),
        ({"style": "watercolor"}, "style", 400017, "anime"),
    ],
)
def test_text_to_video_rules(change: dict[str, Any], field: str, code: int,
                             allowed_contains: object) -> None:
    error = _fails(models.TextToVideo, {**T2V, **change})
    assert error.field == field
    assert error.err_code == code
    assert field in str(error)
    if allowed_contains is not None:
        assert error.allowed is not None and allowed_contains in error.allowed


def test_missing_required_field() -> None:
    payload = {k: v for k, v in T2V.items() if k != "quality"}
    error = _fails(models.TextToVideo, payload)
    assert (error.field, error.err_code) == ("quality", 400011)


def test_constructor_validates_before_anything_is_sent() -> None:
    with pytest.raises(InvalidRequest, match=r"duration: 10 s is not offered by v5 at 540p"):
        models.TextToVideo(**{**T2V, "model": "v5", "duration": 10})


def test_from_params_keeps_unknown_fields_and_rejects_wrong_types() -> None:
    request = models.TextToVideo.from_params({**T2V, "colour": "red"})
    assert request.extra == {"colour": "red"}
    with pytest.raises(InvalidRequest, match="colour: is not a field of text_to_video"):
        models.TextToVideo.from_params({**T2V, "colour": "red"}, strict=True)
    with pytest.raises(InvalidRequest) as info:
        models.TextToVideo.from_params({**T2V, "duration": "five"})
    assert info.value.err_code == 400013
    with pytest.raises(InvalidRequest) as info:
        models.TextToVideo.from_params({"prompt": "x"})
    assert info.value.err_code == 400011


def test_server_side_validation_ignores_unknown_fields() -> None:
    models.TextToVideo.validate_payload({**T2V, "thinking_type": "auto"})


@pytest.mark.parametrize(
    ("cls", "payload", "field"),
    [
        (models.LipSync, {"lip_sync_tts_speaker_id": "7", "lip_sync_tts_content": "hi"},
         "source_video_id | video_media_id"),
        (models.LipSync, {"source_video_id": 1, "video_media_id": 2, "audio_media_id": 3},
         "source_video_id | video_media_id"),
        (models.LipSync, {"source_video_id": 1, "lip_sync_tts_speaker_id": "7"},
         "lip_sync_tts_content"),
        (models.Restyle, {"video_media_id": 1}, "restyle_id | restyle_prompt"),
        (models.SoundEffect, {}, "source_video_id | video_media_id"),
        (models.TemplateVideo, {"template_id": 1, "quality": "540p", "img_id": 1, "img_ids": [2]},
         "img_id | img_ids"),
    ],
)
def test_one_of_rules(cls: type[models.PixVerseRequest], payload: dict[str, Any],
                      field: str) -> None:
    assert _fails(cls, payload).field == field


def test_lip_sync_four_legal_combinations() -> None:
    for video in ({"source_video_id": 1}, {"video_media_id": 2}):
        for audio in ({"audio_media_id": 3},
                      {"lip_sync_tts_speaker_id": "7", "lip_sync_tts_content": "hello"}):
            models.LipSync.validate_payload({**video, **audio})


def test_aliases_from_older_docs_are_accepted() -> None:
    models.SoundEffect.validate_payload({"source_video_id": 1, "prompt": "rain"})
    models.Transition.validate_payload({"first_frame_img_id": 1, "last_frame_img_id": 2,
                                        "prompt": "x", "model": "v5", "duration": 5,
                                        "quality": "540p"})


def test_edit_endpoints_stop_at_720p() -> None:
    for cls, extra in ((models.Swap, {"img_id": 1, "keyframe_id": 1, "mask_id": "9"}),
                       (models.Modify, {"prompt": "x"})):
        error = _fails(cls, {"source_video_id": 1, "quality": "1080p", **extra})
        assert error.field == "quality" and error.allowed == ("360p", "540p", "720p")
    # Mimic: the official how-to and spec disagree about 1080p, so only strict mode refuses.
    mimic = {"source_video_id": 1, "img_id": 1, "quality": "1080p"}
    models.Mimic.validate_payload(mimic)
    assert _fails(models.Mimic, mimic, strict=True).allowed == ("360p", "540p", "720p")


def test_fusion_references() -> None:
    base = {"prompt": "@a and @b", "model": "v5", "duration": 5, "quality": "540p",
            "aspect_ratio": "16:9"}
    refs = [{"type": "subject", "img_id": i, "ref_name": f"r{i}"} for i in range(4)]
    assert _fails(models.Fusion, {**base, "image_references": refs}).field == "image_references"
    models.Fusion.validate_payload({**base, "model": "v6", "image_references": refs})
    dup = [refs[0], {**refs[1], "ref_name": "r0"}]
    models.Fusion.validate_payload({**base, "image_references": dup})  # MCP's rule only
    assert _fails(models.Fusion, {**base, "image_references": dup},
                  strict=True).field.endswith("ref_name")
    bad_type = [{**refs[0], "type": "hero"}]
    assert _fails(models.Fusion, {**base, "image_references": bad_type}).allowed == (
        "subject", "background")
    assert _fails(models.Fusion, {**base, "model": "v4",
                                  "image_references": refs[:1]}).field == "model"


def test_multi_transition_frames() -> None:
    base = {"model": "v5", "quality": "540p"}
    ok = [{"img_id": 1, "duration": 3}, {"img_id": 2, "duration": 4}, {"img_id": 3}]
    models.MultiTransition.validate_payload({**base, "multi_transition": ok})
    assert _fails(models.MultiTransition, {**base, "multi_transition": ok[:1]}).field == (
        "multi_transition")
    no_duration = [{"img_id": 1}, {"img_id": 2}]
    assert _fails(models.MultiTransition,
                  {**base, "multi_transition": no_duration}).field == "multi_transition[0].duration"
    too_long = [{"img_id": 1, "duration": 20}, {"img_id": 2, "duration": 20}, {"img_id": 3}]
    assert "total" in _fails(models.MultiTransition,
                             {**base, "multi_transition": too_long}).field
    assert _fails(models.MultiTransition,
                  {**base, "model": "v6", "multi_transition": ok}).field == "model"


def test_extend_models_exclude_v5_6_and_c1() -> None:
    base = {"source_video_id": 1, "prompt": "up", "duration": 5, "quality": "540p", "seed": 1}
    for model in ("v5.6", "c1"):
        assert _fails(models.Extend, {**base, "model": model}).field == "model"
    models.Extend.validate_payload({**base, "model": "v6"})


def test_big_ids_stay_exact() -> None:
    request = models.ImageToVideo(img_id=629000000000000005, prompt="x", model="v6", duration=5,
                                  quality="540p")
    assert request.to_payload()["img_id"] == 629000000000000005


def test_every_generation_kind_has_a_request_type() -> None:
    from service.pixverse.endpoints import ENDPOINTS

    for name, endpoint in ENDPOINTS.items():
        if endpoint.is_generation or name == "swap_mask":
            assert endpoint.request_type is models.REQUEST_TYPES[name]
        elif endpoint.method == "POST" and endpoint.result_kind != "upload":
            assert endpoint.request_type is not None and name not in models.REQUEST_TYPES
