"""The validation policy of REFERENCE.md §14: refuse only what an official source forbids,
pass unknown fields through, list every bad field at once; the older rules in strict mode."""

from __future__ import annotations

from typing import Any

import pytest

from service.pixverse import experimental, models
from service.pixverse.errors import InvalidRequest

T2V: dict[str, Any] = {"prompt": "a lantern", "model": "v5", "duration": 5, "quality": "540p",
                       "aspect_ratio": "16:9"}
I2V: dict[str, Any] = {"img_id": 1, "prompt": "a lantern", "model": "v5", "duration": 5,
                       "quality": "540p"}
TRANSITION: dict[str, Any] = {"first_frame_img": 1, "last_frame_img": 2, "prompt": "morph",
                              "model": "v5", "duration": 5, "quality": "540p"}
EXTEND: dict[str, Any] = {"source_video_id": 1, "prompt": "rise", "model": "v5", "duration": 5,
                          "quality": "540p"}

#: §14's table: each accepted by default, each refused by the older rule in strict mode.
SECTION_14 = [
    # PixVerse MCP sends motion_mode "normal" with its default v5 on all four calls.
    pytest.param(models.TextToVideo, {**T2V, "motion_mode": "normal"}, "motion_mode",
                 id="t2v-v5-motion-normal"),
    pytest.param(models.ImageToVideo, {**I2V, "motion_mode": "normal"}, "motion_mode",
                 id="i2v-v5-motion-normal"),
    pytest.param(models.Transition, {**TRANSITION, "motion_mode": "normal"}, "motion_mode",
                 id="transition-v5-motion-normal"),
    pytest.param(models.Extend, {**EXTEND, "seed": 1, "motion_mode": "normal"}, "motion_mode",
                 id="extend-v5-motion-normal"),
    pytest.param(models.TextToVideo, {**T2V, "model": "v6", "motion_mode": "normal"},
                 "motion_mode", id="t2v-v6-motion-normal"),
    # The official V6 table marks extend's seed optional; MCP omits it.
    pytest.param(models.Extend, EXTEND, "seed", id="extend-without-seed"),
    # The official pricing page lists V5 / 1080p / 8 s.
    pytest.param(models.TextToVideo, {**T2V, "quality": "1080p", "duration": 8}, "duration",
                 id="v5-1080p-8s"),
    pytest.param(models.TextToVideo, {**T2V, "style": "realistic"}, "style",
                 id="style-realistic"),
    # The V6 table says 2048 for image, transition and extend; ComfyUI 5000.
    pytest.param(models.ImageToVideo, {**I2V, "model": "v6", "prompt": "x" * 5000}, "prompt",
                 id="i2v-prompt-5000"),
    pytest.param(models.Transition, {**TRANSITION, "prompt": "x" * 5000}, "prompt",
                 id="transition-prompt-5000"),
    pytest.param(models.Extend, {**EXTEND, "seed": 1, "prompt": "x" * 5000}, "prompt",
                 id="extend-prompt-5000"),
]


@pytest.mark.parametrize(("cls", "payload", "field"), SECTION_14)
def test_what_pixverse_accepts_is_accepted(cls: type[models.PixVerseRequest],
                                           payload: dict[str, Any], field: str) -> None:
    cls.validate_payload(payload)
    request = cls.from_params(payload)
    assert request.to_payload() == {k: v for k, v in payload.items()}


@pytest.mark.parametrize(("cls", "payload", "field"), SECTION_14)
def test_strict_mode_keeps_the_older_rule(cls: type[models.PixVerseRequest],
                                          payload: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        cls.from_params(payload, strict=True)
    assert info.value.field == field


def test_official_rules_still_hold() -> None:
    cases = [
        ({**T2V, "motion_mode": "fast"}, "motion_mode"),  # no fast from v5 up
        ({**T2V, "model": "v4", "motion_mode": "fast", "quality": "1080p"}, "motion_mode"),
        ({**T2V, "model": "v4.5", "quality": "1080p", "duration": 8}, "duration"),
        ({**T2V, "model": "v6", "camera_movement": "zoom_in"}, "camera_movement"),
        ({**T2V, "prompt": "x" * 5001}, "prompt"),
        ({**T2V, "negative_prompt": "x" * 2049}, "negative_prompt"),
        ({**T2V, "style": "watercolor"}, "style"),
    ]
    for payload, field in cases:
        with pytest.raises(InvalidRequest) as info:
            models.TextToVideo.validate_payload(payload)
        assert info.value.field == field, payload


def test_every_bad_field_is_listed_at_once() -> None:
    payload = {**T2V, "model": "v7", "quality": "4k", "seed": "seven", "negative_prompt": None}
    del payload["prompt"]
    with pytest.raises(InvalidRequest) as info:
        models.TextToVideo.from_params(payload)
    error = info.value
    assert [(e.field, e.err_code) for e in error.errors] == [
        ("prompt", 400011), ("seed", 400013), ("model", 400017), ("quality", 400017)]
    assert (error.field, error.err_code) == ("prompt", 400011)  # the first one, for /api
    for field in ("prompt", "seed", "model", "quality"):
        assert f"{field}:" in str(error)


def test_one_mistake_is_one_problem_not_a_cascade() -> None:
    with pytest.raises(InvalidRequest) as info:
        models.TextToVideo.validate_payload({**T2V, "model": 6, "motion_mode": "fast"})
    assert [e.field for e in info.value.errors] == ["model"]  # no model-dependent rule ran


def test_unknown_fields_go_to_pixverse_verbatim() -> None:
    unknown = {"water_mark": False, "play_bgm": True, "sound_mode": "auto",
               "thinking_type": "enabled", "future_object": {"a": [1, None, {"b": 2.5}]},
               "future_list": [1, "two"], "future_null": None}
    request = models.TextToVideo.from_params({**T2V, **unknown})
    assert request.extra == unknown
    assert request.to_payload() == {**T2V, **unknown}
    assert list(request.to_payload())[-len(unknown):] == list(unknown)  # after the known ones
    assert models.TextToVideo.unknown_fields({**T2V, **unknown}) == list(unknown)


def test_strict_mode_refuses_every_unknown_field_at_once() -> None:
    with pytest.raises(InvalidRequest) as info:
        models.TextToVideo.from_params({**T2V, "water_mark": False, "play_bgm": True},
                                       strict=True)
    assert [e.field for e in info.value.errors] == ["water_mark", "play_bgm"]


def test_aliases_are_known_not_extra() -> None:
    params = {**T2V, "lip_sync_switch": True, "first_frame_img_id": 1}
    assert models.TextToVideo.unknown_fields(params) == ["first_frame_img_id"]  # no warning
    assert models.Transition.unknown_fields({**TRANSITION, "first_frame_img_id": 1}) == []
    request = models.TextToVideo.from_params(params)
    assert request.extra == {"first_frame_img_id": 1} and request.lip_sync_tts_switch is True


def test_extra_cannot_shadow_a_known_field() -> None:
    with pytest.raises(InvalidRequest, match=r"extra\.model: is a field of text_to_video"):
        models.TextToVideo(**T2V, extra={"model": "v6"})


# -- fusion's omni mode (third-party, experimental) ---------------------------------------------

OMNI: dict[str, Any] = {  # what ComfyUI's V6 node sends
    "prompt": "@hero walks like @clip", "model": "v6", "duration": 0, "quality": "720p",
    "aspect_ratio": "auto", "reference_mode": "omni",
    "video_references": [{"ref_name": "clip", "video_media_id": 11}],
}


def test_fusion_omni_mode_is_accepted() -> None:
    models.Fusion.validate_payload(OMNI)
    refs = [{"type": "subject", "img_id": i, "ref_name": f"r{i}"} for i in range(10)]
    models.Fusion.validate_payload({**OMNI, "image_references": refs})


def test_fusion_outside_omni_keeps_the_official_rules() -> None:
    plain = {k: v for k, v in OMNI.items() if k not in ("reference_mode", "video_references")}
    with pytest.raises(InvalidRequest) as info:
        models.Fusion.validate_payload(plain)
    assert [e.field for e in info.value.errors] == ["duration", "aspect_ratio",
                                                    "image_references"]
    assert info.value.errors[2].err_code == 400011
    with pytest.raises(InvalidRequest) as info:
        models.Fusion.validate_payload({**OMNI, "video_references": [{"ref_name": "x"}]})
    assert info.value.field == "video_references[0].video_media_id | source_video_id"


def test_fusion_omni_limits_are_strict_only() -> None:
    refs = [{"type": "subject", "img_id": i, "ref_name": f"r{i}"} for i in range(11)]
    models.Fusion.validate_payload({**OMNI, "image_references": refs})
    with pytest.raises(InvalidRequest) as info:
        models.Fusion.validate_payload({**OMNI, "image_references": refs}, strict=True)
    assert info.value.field == "image_references"


# -- experimental endpoints: their fields always, their value rules in strict mode -------------


def test_experimental_value_rules_run_only_in_strict_mode() -> None:
    body = {"mv_agent_type": "vibe_mv_v9", "audio_media_id": "405833376854443",
            "aspect_ratio": "21:9", "quality": "4k"}
    experimental.MusicMV.validate_payload(body)
    with pytest.raises(InvalidRequest) as info:
        experimental.MusicMV.validate_payload(body, strict=True)
    assert [e.field for e in info.value.errors] == ["mv_agent_type", "aspect_ratio", "quality"]
    usage = {"start_time": "2026-09-01 00:00:00", "end_time": "2026-12-01 00:00:00",
             "limit": 500, "credits_status": "pending"}
    experimental.UsageDetail.validate_payload(usage)
    with pytest.raises(InvalidRequest) as info:
        experimental.UsageDetail.validate_payload(usage, strict=True)
    assert [e.field for e in info.value.errors] == ["limit", "credits_status", "end_time"]


def test_experimental_fields_are_always_checked() -> None:
    with pytest.raises(InvalidRequest) as info:
        experimental.Avatar.validate_payload({"quality": "720p", "lip_sync_tts_speaker_id": "7"})
    assert [(e.field, e.err_code) for e in info.value.errors] == [
        ("img_id", 400011), ("lip_sync_tts_content", 400011)]
    with pytest.raises(InvalidRequest) as info:
        experimental.Agent.validate_payload({"agent_id": True})
    assert (info.value.field, info.value.err_code) == ("agent_id", 400013)


def test_experimental_ids_may_be_decimal_strings_as_the_kit_sends_them() -> None:
    request = experimental.Avatar.from_params({"img_id": "629000000000000001", "quality": "720p",
                                               "audio_media_id": "629000000000000003"})
    assert request.to_payload()["img_id"] == "629000000000000001"
