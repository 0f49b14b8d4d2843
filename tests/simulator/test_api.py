"""Every /openapi/v2 endpoint over real HTTP: a success and its documented errors."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from service.pixverse.endpoints import ENDPOINTS
from tests.simulator.helpers import KEY, PNG, TEXT_BODY, Sim, shared_sim, sim, sim_factory

__all__ = ["shared_sim", "sim", "sim_factory"]  # fixtures


def err(data: dict[str, Any], code: int, *words: str) -> None:
    """Assert an error envelope with ``code`` whose message mentions every word."""
    assert data["ErrCode"] == code, data
    assert data["Resp"] is None
    for word in words:
        assert word in data["ErrMsg"], (word, data["ErrMsg"])


def finished_video(sim: Sim, **overrides: Any) -> int:
    video_id = sim.text_video(**overrides)
    assert sim.finish(video_id)["status"] == 1
    return video_id


# -- authentication and headers ------------------------------------------------------------


def test_missing_and_unknown_api_key_answer_10002_with_http_200(sim: Sim) -> None:
    for key in (None, "no-such-key"):
        response = sim.call("POST", "/video/text/generate", key=key, json=TEXT_BODY)
        assert response.status_code == 200
        err(response.json(), 10002, "Invalid API-KEY")
    err(sim.get("/account/balance", key="wrong"), 10002)
    assert sim.jobs() == []


def test_headers_match_case_insensitively(sim: Sim) -> None:
    response = sim.client.post("/openapi/v2/video/text/generate", json=TEXT_BODY,
                               headers={"api-key": sim.key, "AI-TRACE-ID": "t-1"})
    assert response.json()["ErrCode"] == 0
    assert sim.job(response.json()["Resp"]["video_id"])["trace_id"] == "t-1"


def test_missing_trace_id_is_400011_naming_the_header(sim: Sim) -> None:
    err(sim.post("/video/text/generate", TEXT_BODY, trace=None), 400011, "Ai-trace-id")
    err(sim.get("/account/balance", trace=None), 400011, "Ai-trace-id")
    assert sim.jobs() == []


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b"", b'"text"'])
def test_a_body_that_is_not_a_json_object_is_400013(sim: Sim, content: bytes) -> None:
    response = sim.call("POST", "/video/text/generate", content=content,
                        headers={"content-type": "application/json"})
    err(response.json(), 400013)


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "code", "field"), [
    ({"prompt": None}, 400011, "prompt"),
    ({"quality": ""}, 400011, "quality"),
    ({"duration": "5"}, 400013, "duration"),
    ({"seed": 1.5}, 400013, "seed"),
    ({"duration": 10}, 400017, "duration"),
    ({"model": "v9"}, 400017, "model"),
    ({"aspect_ratio": "21:9"}, 400017, "aspect_ratio"),
    ({"prompt": "x" * 5001}, 400018, "prompt"),
    ({"negative_prompt": "x" * 2049}, 400019, "negative_prompt"),
])
def test_validation_errors_name_the_field(sim: Sim, change: dict[str, Any], code: int,
                                          field: str) -> None:
    body = {k: v for k, v in {**TEXT_BODY, **change}.items() if v is not None}
    err(sim.post("/video/text/generate", body), code, field)
    assert sim.stats()["charges"] == 0
    assert sim.stats()["errors"] == {str(code): 1}


def test_blocked_word_is_refused_before_submission_with_500063(sim: Sim) -> None:
    err(sim.post("/video/text/generate", {**TEXT_BODY, "prompt": "a BLOCKED-WORD here"}), 500063)
    assert sim.jobs() == []
    assert sim.stats()["charges"] == 0


def test_every_endpoint_row_is_served(sim: Sim) -> None:
    """No ENDPOINTS row answers 404/405 (they all reach the envelope layer)."""
    for endpoint in ENDPOINTS.values():
        path = endpoint.path.replace("{id}", "1").replace("{image_id}", "1")
        response = sim.call(endpoint.method, path, key="wrong-key")
        assert response.status_code == 200, (endpoint.name, response.status_code)
        assert response.json()["ErrCode"] == 10002, endpoint.name


# -- generation endpoints ----------------------------------------------------------------------


def test_text_to_video_returns_a_big_exact_video_id(sim: Sim) -> None:
    response = sim.call("POST", "/video/text/generate", json=TEXT_BODY)
    assert response.status_code == 200
    data = response.json()
    assert data["ErrCode"] == 0 and data["ErrMsg"] == "success"
    assert set(data["Resp"]) == {"video_id"}
    first = data["Resp"]["video_id"]
    assert isinstance(first, int) and first > 2**53
    second = sim.text_video()
    # Adjacent ids collide as doubles: a float-parsing client would notice.
    assert second != first and float(second) == float(first)
    assert re.search(rf'"video_id":\s*{first}\b', response.text)


def test_image_to_video_needs_an_uploaded_image_of_the_same_key(sim: Sim) -> None:
    img = sim.upload_image()
    body = {"img_id": img, "prompt": "the knight draws", "model": "c1", "duration": 6,
            "quality": "1080p"}
    assert sim.ok("/video/img/generate", body)["video_id"] > 2**53
    err(sim.post("/video/img/generate", {**body, "img_id": img + 999}), 400032, "img_id")
    other = sim.upload_image(key=sim.other_key)
    err(sim.post("/video/img/generate", {**body, "img_id": other}), 400032, "img_id")


def test_img_generate_with_template_id_validates_as_a_template(sim: Sim) -> None:
    img = sim.upload_image()
    body = {"template_id": 302325299692608, "img_id": img, "prompt": "", "model": "v6",
            "duration": 5, "quality": "540p"}
    video_id = sim.ok("/video/img/generate", body)["video_id"]
    assert sim.job(video_id)["kind"] == "template_video"
    # An empty prompt is fine for a template, but the image is still required.
    err(sim.post("/video/img/generate", {"template_id": 1, "quality": "540p"}), 400011,
        "img_id")
    err(sim.post("/video/img/generate", {**body, "img_id": None, "img_ids": [img, 12345]}),
        400032, "img_ids[1]")


def test_transition_checks_both_frames(sim: Sim) -> None:
    first, last = sim.upload_image(), sim.upload_image()
    body = {"first_frame_img": first, "last_frame_img": last, "prompt": "caterpillar to "
            "butterfly", "model": "v6", "duration": 5, "quality": "540p"}
    assert sim.ok("/video/transition/generate", body)["video_id"] > 2**53
    err(sim.post("/video/transition/generate", {**body, "last_frame_img": 7}), 400032,
        "last_frame_img")


def test_lip_sync_sources_and_audio(sim: Sim) -> None:
    source = finished_video(sim)
    tts = {"lip_sync_tts_speaker_id": "8", "lip_sync_tts_content": "Welcome back!"}
    assert sim.ok("/video/lip_sync/generate", {"source_video_id": source, **tts})["video_id"]
    video = sim.upload_media("clip.mp4", "video/mp4")
    audio = sim.upload_media("voice.mp3", "audio/mpeg", b"a" * 32_000)
    vid = sim.ok("/video/lip_sync/generate", {"video_media_id": video, "audio_media_id": audio})
    assert sim.job(vid["video_id"])["credits"] == 8  # 2 s of audio at 4 credits/s
    err(sim.post("/video/lip_sync/generate", {"video_media_id": video, "audio_media_id": 5}),
        500008, "audio_media_id")
    err(sim.post("/video/lip_sync/generate", {"video_media_id": audio, **tts}), 400017,
        "video_media_id")
    err(sim.post("/video/lip_sync/generate", {"video_media_id": video}), 400011)
    err(sim.post("/video/lip_sync/generate", {"video_media_id": video,
                                              "lip_sync_tts_speaker_id": "99",
                                              "lip_sync_tts_content": "hi"}),
        400017, "lip_sync_tts_speaker_id")


def test_a_source_video_must_exist_belong_to_the_key_and_have_succeeded(sim: Sim) -> None:
    body = {"prompt": "rise above the clouds", "model": "v6", "duration": 5,
            "quality": "720p", "seed": 1}
    err(sim.post("/video/extend/generate", {**body, "source_video_id": 42}), 500008,
        "source_video_id")
    generating = sim.text_video()
    err(sim.post("/video/extend/generate", {**body, "source_video_id": generating}), 400017,
        "source_video_id")
    done = sim.wait_job(generating)
    assert done["status"] == 1
    assert sim.ok("/video/extend/generate", {**body, "source_video_id": generating})
    err(sim.post("/video/extend/generate", {**body, "source_video_id": generating},
                 key=sim.other_key), 500008)
    failed = sim.text_video(prompt="please fail-me")
    assert sim.wait_job(failed)["status"] == 8
    err(sim.post("/video/extend/generate", {**body, "source_video_id": failed}), 400017)
    err(sim.post("/video/extend/generate", {**body, "model": "c1", "source_video_id": 1}),
        400017, "model")


def test_tts_list_pages_the_fifteen_speakers(sim: Sim) -> None:
    data = sim.get("/video/lip_sync/tts_list?page_num=1&page_size=30")
    assert data["ErrCode"] == 0
    assert data["Resp"]["total"] == 15
    speakers = data["Resp"]["data"]
    assert speakers[0] == {"speaker_id": "7", "name": "Harper"}
    assert speakers[-1] == {"speaker_id": "Auto", "name": "Auto"}
    page2 = sim.get("/video/lip_sync/tts_list?page_num=2&page_size=10")["Resp"]["data"]
    assert len(page2) == 5
    err(sim.get("/video/lip_sync/tts_list?page_num=1"), 400011, "page_size")
    err(sim.get("/video/lip_sync/tts_list?page_num=x&page_size=1"), 400013, "page_num")


def test_fusion_checks_reference_images(sim: Sim) -> None:
    dog, room = sim.upload_image(), sim.upload_image()
    body: dict[str, Any] = {"image_references": [
        {"type": "subject", "img_id": dog, "ref_name": "dog"},
        {"type": "background", "img_id": room, "ref_name": "room"}],
        "prompt": "@dog chases a ball across @room", "model": "v6", "duration": 5,
        "quality": "720p", "aspect_ratio": "16:9"}
    assert sim.ok("/video/fusion/generate", body)["video_id"] > 2**53
    body["image_references"][1]["img_id"] = 3
    err(sim.post("/video/fusion/generate", body), 400032, "image_references[1].img_id")


def test_multi_transition_echoes_credits(sim: Sim) -> None:
    frames = [sim.upload_image() for _ in range(3)]
    body: dict[str, Any] = {"multi_transition": [{"img_id": frames[0], "duration": 3, "prompt": "sunrise"},
                                 {"img_id": frames[1], "duration": 4},
                                 {"img_id": frames[2]}],
            "model": "v5", "quality": "540p"}
    resp = sim.ok("/video/multi_transition/generate", body)
    assert resp["credits"] == 105  # the official example's price
    body["multi_transition"][2]["img_id"] = 1
    err(sim.post("/video/multi_transition/generate", body), 400032, "multi_transition[2]")


def test_restyle_and_its_list(sim: Sim) -> None:
    source = finished_video(sim)
    resp = sim.ok("/video/restyle/generate", {"source_video_id": source, "restyle_id": 17})
    assert set(resp) == {"video_id", "credits"} and resp["credits"] > 0
    err(sim.post("/video/restyle/generate", {"source_video_id": source, "restyle_id": 999}),
        400017, "restyle_id")
    err(sim.post("/video/restyle/generate", {"source_video_id": 1, "restyle_prompt": "clay"}),
        500008)
    listed = sim.get("/video/restyle/list?page_num=1&page_size=5")["Resp"]
    assert listed["total"] >= 5 and len(listed["data"]) == 5
    assert {"restyle_id", "name", "cover_url"} <= set(listed["data"][0])
    by_body = sim.call("GET", "/video/restyle/list", json={"page_num": 2, "page_size": 5}).json()
    assert by_body["Resp"]["data"][0]["restyle_id"] == listed["data"][0]["restyle_id"] + 5
    err(sim.get("/video/restyle/list"), 400011, "page_num")


def test_swap_mask_is_synchronous_and_charged_then_swap_uses_its_mask(sim: Sim) -> None:
    source = finished_video(sim)
    before = sim.stats()["credits_charged"]
    mask = sim.ok("/video/mask/selection", {"source_video_id": source, "keyframe_id": 1})
    assert mask["keyframe_id"] == 1 and mask["credits"] == 5
    assert mask["keyframe_url"].startswith(sim.base)
    assert sim.stats()["credits_charged"] == before + 5
    mask_id = mask["mask_info"][0]["mask_id"]
    assert isinstance(mask_id, str) and mask["mask_info"][0]["mask_name"]
    assert sim.client.get(mask["mask_info"][0]["mask_url"]).status_code == 200
    img = sim.upload_image()
    body = {"source_video_id": source, "keyframe_id": 1, "mask_id": mask_id, "img_id": img,
            "quality": "540p"}
    swap = sim.ok("/video/swap/generate", body)
    assert set(swap) == {"video_id", "credits"}
    err(sim.post("/video/swap/generate", {**body, "mask_id": "123"}), 500008, "mask_id")
    err(sim.post("/video/swap/generate", {**body, "quality": "1080p"}), 400017, "quality")
    err(sim.post("/video/mask/selection", {"source_video_id": 77}), 500008)


def test_sound_effect_accepts_the_prompt_alias(sim: Sim) -> None:
    source = finished_video(sim)
    resp = sim.ok("/video/sound_effect/generate",
                  {"source_video_id": source, "original_sound_switch": True, "prompt": "rain"})
    job = sim.job(resp["video_id"])
    assert job["payload"]["sound_effect_content"] == "rain" and job["credits"] == 10
    err(sim.post("/video/sound_effect/generate", {"original_sound_switch": True}), 400011)


def test_mimic_echoes_credit_singular(sim: Sim) -> None:
    video = sim.upload_media("dance.mp4", "video/mp4")
    img = sim.upload_image()
    resp = sim.ok("/video/mimic/generate", {"video_media_id": video, "img_id": img,
                                            "quality": "540p"})
    assert set(resp) == {"video_id", "credit"} and resp["credit"] == 50  # 10/s x 5 s
    err(sim.post("/video/mimic/generate", {"video_media_id": video, "img_id": img,
                                           "quality": "4k"}), 400017, "quality")


def test_mimic_1080p_is_for_pixverse_to_decide_unless_strict(sim_factory: Any) -> None:
    """The official how-to says no 1080p, the official spec lists it: they disagree, so only
    strict validation refuses it (REFERENCE.md §14)."""
    body = {"img_id": 0, "quality": "1080p"}
    for strict, code in ((False, 0), (True, 400017)):
        sim = sim_factory(strict_validation=strict)
        body.update(video_media_id=sim.upload_media("dance.mp4", "video/mp4"),
                    img_id=sim.upload_image())
        assert sim.post("/video/mimic/generate", body)["ErrCode"] == code


def test_modify_and_upscale(sim: Sim) -> None:
    video = sim.upload_media("clip.webm", "video/webm")
    img = sim.upload_image()
    body = {"video_media_id": video, "prompt": "@selection0 is replaced by @img0",
            "img_ids": [img], "quality": "540p"}
    assert set(sim.ok("/video/modify/generate", body)) == {"video_id"}
    err(sim.post("/video/modify/generate", {**body, "mask_ids": ["nope"]}), 500008, "mask_ids")
    assert set(sim.ok("/video/upscale/generate", {"video_media_id": video})) == {"video_id"}
    err(sim.post("/video/upscale/generate", {}), 400011)


def test_image_template_and_image_result(sim: Sim) -> None:
    img = sim.upload_image()
    resp = sim.ok("/image/template/generate", {"img_ids": [str(img)],
                                               "template_id": 377378608924544})
    assert set(resp) == {"image_id", "credits"} and resp["credits"] == 20
    image_id = resp["image_id"]
    first = sim.get(f"/image/result/{image_id}")["Resp"]
    assert first["status"] == 5 and first["url"] == ""
    sim.wait_job(image_id)
    record = sim.get(f"/image/result/{image_id}")["Resp"]
    assert record["status"] == 1 and record["image_id"] == image_id
    assert record["customer_paths"]["gen_img_req_img_ids"] == [img]
    png = sim.client.get(record["url"])
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    err(sim.get("/image/result/12345"), 500008)
    err(sim.get(f"/video/result/{image_id}"), 500008)  # an image is not a video
    err(sim.post("/image/template/generate", {"img_ids": [img]}), 400011, "template_id")
    err(sim.post("/image/template/generate", {"img_ids": [1], "template_id": 1}), 400032)


def test_video_result_errors(sim: Sim) -> None:
    err(sim.get("/video/result/384920175633400000"), 500008)
    err(sim.get("/video/result/abc"), 400013)
    mine = sim.text_video()
    err(sim.get(f"/video/result/{mine}", key=sim.other_key), 500008)


def test_video_result_record_shape(sim: Sim) -> None:
    video_id = sim.text_video(model="v6", aspect_ratio="21:9", quality="720p", duration=8,
                              negative_prompt="blurry", seed=424242,
                              generate_audio_switch=True)
    generating = sim.result(video_id)
    assert generating["status"] == 5 and generating["url"] == "" and generating["size"] == 0
    sim.wait_job(video_id)
    record = sim.result(video_id)
    assert record["id"] == video_id and record["status"] == 1
    assert record["url"] == f"{sim.base}/media/videos/{video_id}.mp4"
    assert record["seed"] == 424242 and record["negative_prompt"] == "blurry"
    assert (record["outputWidth"], record["outputHeight"]) == (1680, 720)
    assert record["resolution_ratio"] == 720 and record["has_audio"] is True
    assert record["credits"] == 96  # v6 720p with audio: 12/s x 8 s
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", record["create_time"])
    assert record["size"] > 0


# -- uploads -------------------------------------------------------------------------------


def test_image_upload_serves_the_bytes_back(sim: Sim) -> None:
    response = sim.call("POST", "/image/upload", files={"image": ("a.png", PNG, "image/png")})
    resp = response.json()["Resp"]
    assert resp["img_id"] > 2**53 and resp["img_url"].startswith(sim.base)
    assert sim.client.get(resp["img_url"]).content == PNG
    # A generic content type falls back to the extension.
    by_ext = sim.call("POST", "/image/upload",
                      files={"image": ("b.webp", b"RIFF0000WEBP", "application/octet-stream")})
    assert by_ext.json()["ErrCode"] == 0


def test_image_upload_by_url_with_an_empty_image_part(sim: Sim) -> None:
    response = sim.call("POST", "/image/upload", files={"image": ("", b"", "image/png")},
                        data={"image_url": "https://example.com/cat.jpg"})
    assert response.json()["ErrCode"] == 0
    err(sim.call("POST", "/image/upload", data={"image_url": "ftp://x/cat.jpg"}).json(), 500042)
    err(sim.call("POST", "/image/upload", files={"image": ("", b"", "image/png")}).json(),
        400011, "image")


def test_image_upload_rejects_format_and_size(sim: Sim) -> None:
    bad = sim.call("POST", "/image/upload", files={"image": ("a.gif", b"GIF89a", "image/gif")})
    err(bad.json(), 500032)
    big = b"\x00" * (20 * 1024 * 1024)
    too_big = sim.call("POST", "/image/upload", files={"image": ("big.png", big, "image/png")})
    err(too_big.json(), 500030)
    assert sim.sim_get("/uploads", params={"api_key": sim.key})["uploads"] == []


def test_image_upload_moderation_is_http_500_with_lowercase_keys(sim: Sim) -> None:
    response = sim.call("POST", "/image/upload",
                        files={"image": ("nsfw-photo.png", PNG, "image/png")})
    assert response.status_code == 500
    data = response.json()
    assert set(data) == {"err_code", "err_msg", "resp"}
    assert data["err_code"] == 500052 and data["resp"] == ""
    in_bytes = sim.call("POST", "/image/upload",
                        files={"image": ("ok.png", PNG + b"..moderate-me..", "image/png")})
    assert in_bytes.status_code == 500 and in_bytes.json()["err_code"] == 500052


def test_upload_moderation_uses_the_envelope_when_configured(sim_factory: Any) -> None:
    sim = sim_factory(lowercase_upload_errors=False)
    response = sim.call("POST", "/image/upload", files={"image": ("nsfw.png", PNG, "image/png")})
    assert response.status_code == 200
    err(response.json(), 500052)


def test_media_upload_infers_the_media_type(sim: Sim) -> None:
    video = sim.call("POST", "/media/upload", files={"file": ("c.mp4", b"v" * 10, "video/mp4")})
    resp = video.json()["Resp"]
    assert resp["media_type"] == "video" and resp["media_id"] > 2**53
    assert sim.client.get(resp["url"]).content == b"v" * 10
    audio = sim.call("POST", "/media/upload", files={"file": ("v.wav", b"a", "audio/wav")})
    assert audio.json()["Resp"]["media_type"] == "audio"
    by_url = sim.call("POST", "/media/upload", data={"file_url": "https://example.com/x.mov"})
    assert by_url.json()["Resp"]["media_type"] == "video"
    err(sim.call("POST", "/media/upload",
                 files={"file": ("x.txt", b"t", "text/plain")}).json(), 400017, "file")
    err(sim.call("POST", "/media/upload").json(), 400011)


# -- lists, balance ----------------------------------------------------------------------------


def test_effects_template_list(sim: Sim) -> None:
    resp = sim.get("/video/effects/templates/list?type=1&page=1&pageSize=10")["Resp"]
    assert resp["total"] >= 1 and resp["effect_items"]
    assert {"template_id", "name"} <= set(resp["effect_items"][0])
    assert resp["effect_items"][0]["template_id"] == 302325299692608
    err(sim.get("/video/effects/templates/list?type=3"), 400017, "type")


def test_balance_drops_monthly_first_then_package(sim_factory: Any) -> None:
    from service.simulator.config import Account

    sim = sim_factory(accounts={KEY: Account(credit_monthly=50, credit_package=100)})
    before = sim.get("/account/balance")["Resp"]
    assert before["credit_monthly"] == 50 and before["credit_package"] == 100
    assert isinstance(before["account_id"], int)
    sim.text_video()  # 45 credits
    sim.text_video()  # 45 more: 5 from monthly, 40 from package
    after = sim.get("/account/balance")["Resp"]
    assert (after["credit_monthly"], after["credit_package"]) == (0, 60)
    err(sim.post("/video/text/generate", {**TEXT_BODY, "quality": "1080p"}), 500090,
        "120")
    assert sim.stats()["charges"] == 2 and len(sim.jobs()) == 2


def test_business_errors_are_not_http_errors(sim: Sim) -> None:
    response = sim.call("GET", "/video/result/1")
    assert response.status_code == 200 and response.json()["ErrCode"] == 500008
    with pytest.raises(httpx.HTTPStatusError):
        sim.client.get("/openapi/v2/nope").raise_for_status()


def test_the_price_function_is_pluggable(sim_factory: Any) -> None:
    sim = sim_factory(price_function=lambda quote: 3 if quote.kind == "text_to_video" else 1)
    sim.text_video()
    assert sim.stats()["credits_charged"] == 3
