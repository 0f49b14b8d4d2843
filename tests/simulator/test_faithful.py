"""The simulator as faithful as the evidence stands (REFERENCE.md §14): it accepts what
PixVerse's own client sends, ignores what it does not know (and shows it), and its knobs for
what no source settles: credits on every create, float webhook sizes, the quality's edge,
per-request callback URLs, strict validation. Over real HTTP."""

from __future__ import annotations

from typing import Any

from service.simulator import media
from tests.simulator.helpers import TEXT_BODY, Sim, SimFactory, shared_sim, sim, sim_factory
from tests.simulator.test_api import err

__all__ = ["shared_sim", "sim", "sim_factory"]  # fixtures

GENERATE = "/video/text/generate"
#: PixVerse MCP's text-to-video call with its defaults (v5), as §14 describes it.
MCP_TEXT: dict[str, Any] = {**TEXT_BODY, "motion_mode": "normal", "water_mark": False,
                            "play_bgm": True, "sound_effect_switch": True, "sound_mode": "auto"}


def test_what_pixverse_mcp_sends_is_accepted(sim: Sim) -> None:
    video_id = sim.ok(GENERATE, MCP_TEXT)["video_id"]
    assert sim.wait_job(video_id)["status"] == 1


def test_unknown_fields_are_ignored_but_shown_as_received(sim: Sim) -> None:
    body = {**TEXT_BODY, "thinking_type": "auto", "future": {"nested": [1, None, 2.5]},
            "lip_sync_switch": False, "negative_prompt": None}
    video_id = sim.ok(GENERATE, body)["video_id"]
    job = sim.job(video_id)
    assert job["body"] == body  # exactly as sent: unknown, aliased and null fields included
    assert "thinking_type" not in job["payload"] and "future" not in job["payload"]
    assert job["payload"]["lip_sync_tts_switch"] is False  # the alias, normalised


def test_strict_validation_brings_back_the_older_rules(sim_factory: SimFactory) -> None:
    strict = sim_factory(strict_validation=True)
    err(strict.post(GENERATE, MCP_TEXT), 400017, "motion_mode")
    extend_without_seed = {"prompt": "up", "model": "v5", "duration": 5, "quality": "540p",
                           "source_video_id": 1}
    err(strict.post("/video/extend/generate", extend_without_seed), 400011, "seed")


def test_validation_errors_name_every_bad_field(sim: Sim) -> None:
    data = sim.post(GENERATE, {**TEXT_BODY, "model": "v7", "quality": "4k", "seed": -1})
    err(data, 400017, "model:", "quality:", "seed:")


def test_credits_on_every_create_answer_is_a_knob(sim_factory: SimFactory) -> None:
    default = sim_factory()
    assert set(default.ok(GENERATE, TEXT_BODY)) == {"video_id"}
    echoing = sim_factory(credits_on_every_create=True)
    resp = echoing.ok(GENERATE, TEXT_BODY)
    assert set(resp) == {"video_id", "credits"} and resp["credits"] == 45
    video = echoing.upload_media("dance.mp4", "video/mp4")
    mimic = echoing.ok("/video/mimic/generate", {"video_media_id": video, "quality": "540p",
                                                 "img_id": echoing.upload_image()})
    assert mimic["credit"] == mimic["credits"] == 50  # mimic's own spelling stays too


def test_quality_names_the_short_edge_or_the_long_one(sim_factory: SimFactory) -> None:
    for edge, size in (("short", (960, 540)), ("long", (1024, 576))):
        sim = sim_factory(quality_edge=edge)
        video_id = sim.text_video(model="v6")
        record = sim.result(video_id)
        assert (record["outputWidth"], record["outputHeight"]) == size, edge
    square = sim.text_video(model="v6", quality="720p", aspect_ratio="1:1")
    record = sim.result(square)
    assert (record["outputWidth"], record["outputHeight"]) == (1280, 1280)


def test_webhook_size_can_be_a_float_in_megabytes(sim_factory: SimFactory) -> None:
    sim = sim_factory(webhook_size_float=True)
    video_id = sim.text_video()
    forced = sim.client.post(f"/_sim/jobs/{video_id}/outcome",
                             json={"status": 1, "size_bytes": 11_010_048})
    assert forced.status_code == 200
    [payload] = sim.wait_published(video_id)
    assert payload["size"] == 10.5 and isinstance(payload["size"], float)
    default = sim_factory()
    other = default.text_video()
    default.finish(other)
    assert isinstance(default.wait_published(other)[0]["size"], int)


def test_a_request_callback_url_is_honoured_only_when_asked(sim_factory: SimFactory) -> None:
    body = {**TEXT_BODY, "callback_url": "http://127.0.0.1:9/hook"}
    off = sim_factory()
    ignored = off.ok(GENERATE, body)["video_id"]
    off.finish(ignored)
    assert off.wait_published(ignored) and off.dispatcher.deliveries()[0]["url"] is None
    on = sim_factory(honour_request_callback_url=True)
    honoured = on.ok(GENERATE, body)["video_id"]
    assert on.job(honoured)["callback_url"] == "http://127.0.0.1:9/hook"
    on.finish(honoured)
    on.wait_published(honoured)
    assert on.dispatcher.deliveries()[0]["url"] == "http://127.0.0.1:9/hook"


def test_media_upload_answers_with_the_video_size(sim: Sim) -> None:
    response = sim.call("POST", "/media/upload", files={
        "file": ("clip.mp4", media.SAMPLE_MP4.read_bytes(), "video/mp4")})
    resp = response.json()["Resp"]
    assert (resp["width"], resp["height"]) == (320, 180)  # the bundled sample's track header
    unreadable = sim.call("POST", "/media/upload", files={"file": ("c.mp4", b"v" * 10,
                                                                   "video/mp4")})
    assert "width" not in unreadable.json()["Resp"]
    audio = sim.call("POST", "/media/upload", files={"file": ("v.wav", b"a", "audio/wav")})
    assert "width" not in audio.json()["Resp"]


def test_the_moderation_body_is_pixverses_own(sim: Sim) -> None:
    response = sim.call("POST", GENERATE, json={**TEXT_BODY, "prompt": "a blocked-word"})
    assert response.json() == {
        "ErrCode": 500063, "Resp": None,
        "ErrMsg": "The input content does not comply with platform specifications, please "
                  "re-enter"}
    assert "blocked-word" in response.headers["x-simulator-detail"]


def test_the_knobs_read_from_the_environment() -> None:
    from service.simulator.config import SimulatorConfig

    config = SimulatorConfig.from_env({
        "PIXVERSE_SIM_STRICT_VALIDATION": "1", "PIXVERSE_SIM_WEBHOOK_SIZE_FLOAT": "true",
        "PIXVERSE_SIM_CREDITS_ON_EVERY_CREATE": "yes",
        "PIXVERSE_SIM_HONOUR_REQUEST_CALLBACK_URL": "on", "PIXVERSE_SIM_QUALITY_EDGE": "long"})
    assert (config.strict_validation, config.webhook_size_float, config.credits_on_every_create,
            config.honour_request_callback_url, config.quality_edge) == (
        True, True, True, True, "long")
    defaults = SimulatorConfig.from_env({})
    assert (defaults.strict_validation, defaults.webhook_size_float,
            defaults.credits_on_every_create, defaults.honour_request_callback_url,
            defaults.quality_edge) == (False, False, False, False, "short")
