"""Every PixVerse endpoint through ``PixVerseClient``'s public methods, against the simulator:
a success and at least one documented error each, with ids checked exactly (> 2**53)."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.pixverse import experimental, models, results
from service.pixverse.errors import (
    APIError,
    AuthenticationError,
    InsufficientCreditsError,
    InvalidRequest,
    ModerationError,
    NotFoundError,
    ValidationError,
)
from tests.contract.conftest import PNG, CountingClient, Sim

TEMPLATE_ID = 302325299692608  # the official effect-template example
IMAGE_TEMPLATE_ID = 377378608924544
UNKNOWN_VIDEO = 384_920_175_633_400_000  # below the simulator's first id: never issued
UNKNOWN_IMAGE = 371_122_334_455_600_000
TEXT: dict[str, Any] = {"prompt": "a paper lantern drifts over a misty lake", "model": "v5",
                        "duration": 5, "quality": "540p", "aspect_ratio": "16:9"}
EXTEND: dict[str, Any] = {"prompt": "rise above the clouds", "model": "v5", "duration": 5,
                          "quality": "540p", "seed": 7}


def text(**changes: Any) -> models.TextToVideo:
    return models.TextToVideo(**{**TEXT, **changes})


@dataclasses.dataclass
class Acct:
    """A fresh funded account on the module's simulator, with an open client."""

    sim: Sim
    key: str
    client: CountingClient

    async def image(self) -> int:
        return (await self.client.upload_image(PNG, filename="frame.png")).img_id

    async def media(self, name: str, content: bytes = b"v" * 1000) -> int:
        return (await self.client.upload_media(content, filename=name)).media_id

    async def source_video(self) -> int:
        """A video already in status 1 (its outcome forced), usable as ``source_video_id``."""
        video_id = (await self.client.text_to_video(text())).job_id
        assert self.sim.finish(video_id)["status"] == 1
        return video_id

    def job(self, job_id: int) -> dict[str, Any]:
        return self.sim.job(job_id)


@pytest.fixture
async def acct(shared_sim: Sim) -> AsyncIterator[Acct]:
    key = shared_sim.new_account()
    async with shared_sim.client(key) as client:
        yield Acct(shared_sim, key, client)


def assert_job(acct: Acct, submission: results.Submission, kind: str) -> dict[str, Any]:
    """The submission names a new job of this key, with its exact 64-bit id and trace id."""
    assert submission.job_id > 2**53
    job = acct.job(submission.job_id)
    assert job["id"] == submission.job_id  # parsed by the inspection side, exactly
    assert (job["kind"], job["api_key"], job["trace_id"]) == (kind, acct.key,
                                                              submission.trace_id)
    return job


def assert_api_error(exc: pytest.ExceptionInfo[APIError], code: int, *words: str) -> None:
    assert exc.value.err_code == code, exc.value
    for word in words:
        assert word in exc.value.err_msg, (word, exc.value.err_msg)


async def wait_status(read: Callable[[], Awaitable[Any]], status: int,
                      timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while (record := await read()).status != status:
        assert time.monotonic() < deadline, record
        await asyncio.sleep(0.02)
    return record


# -- text to video, results, balance --------------------------------------------------------


async def test_text_to_video_ids_are_exact_and_consecutive(acct: Acct) -> None:
    first = await acct.client.text_to_video(text(), trace_id="contract-t2v-1")
    second = await acct.client.text_to_video(text())
    assert first.trace_id == "contract-t2v-1" and first.image_id is None
    assert first.credits is None  # text-to-video echoes no price
    assert_job(acct, first, "text_to_video")
    assert_job(acct, second, "text_to_video")
    # Consecutive ids above 2**53 collide as doubles: only exact integers tell them apart.
    assert second.video_id == first.job_id + 1
    assert (await acct.client.balance()).total == 100_000 - 2 * 45


async def test_video_result_is_5_then_1_with_a_downloadable_mp4(acct: Acct) -> None:
    video_id = (await acct.client.text_to_video(text(model="v6", generate_audio_switch=True))
                ).job_id
    generating = await acct.client.video_result(video_id)
    assert (generating.id, generating.status, generating.url) == (video_id, 5, "")
    done = await wait_status(lambda: acct.client.video_result(video_id), 1)
    assert done.id == video_id and done.has_audio is True
    assert done.credits == 45  # v6 540p with audio: 9 credits/s x 5 s
    assert done.url.startswith(acct.sim.base)
    async with httpx.AsyncClient() as http:
        video = await http.get(done.url)
    assert video.status_code == 200
    assert video.content[4:8] == b"ftyp"  # an ISO BMFF file starts with its ftyp box
    assert len(video.content) == done.size > 0


async def test_video_result_of_an_unknown_or_foreign_video_is_not_found(acct: Acct) -> None:
    with pytest.raises(NotFoundError) as exc:
        await acct.client.video_result(UNKNOWN_VIDEO)
    assert_api_error(exc, 500008)
    other = acct.sim.new_account()
    async with acct.sim.client(other) as theirs:
        video_id = (await theirs.text_to_video(text())).job_id
    with pytest.raises(NotFoundError):
        await acct.client.video_result(video_id)


async def test_balance(acct: Acct) -> None:
    balance = await acct.client.balance()
    assert (balance.credit_monthly, balance.credit_package) == (100_000, 0)
    assert isinstance(balance.account_id, int) and balance.account_id > 0


async def test_insufficient_credits(shared_sim: Sim) -> None:
    key = shared_sim.new_account(credits=10)
    async with shared_sim.client(key) as client:
        with pytest.raises(InsufficientCreditsError) as exc:
            await client.text_to_video(text())
        assert_api_error(exc, 500090, "45")
        assert (await client.balance()).total == 10
    assert shared_sim.jobs(key) == []


#: PixVerse's moderation refusal, word for word (as the semi-official kit recorded it).
PIXVERSE_MODERATION_MESSAGE = ("The input content does not comply with platform "
                               "specifications, please re-enter")


async def test_blocked_word_is_refused_before_submission(acct: Acct) -> None:
    with pytest.raises(ModerationError) as exc:
        await acct.client.text_to_video(text(prompt="a lantern and a blocked-word"))
    assert_api_error(exc, 500063)
    assert exc.value.err_msg == PIXVERSE_MODERATION_MESSAGE  # nothing of ours appended
    assert acct.sim.jobs(acct.key) == []
    assert acct.sim.stats(acct.key)["charges"] == 0


async def test_the_moderation_body_is_pixverses_and_the_reason_a_header(acct: Acct) -> None:
    body = {**TEXT, "prompt": "a lantern and a blocked-word"}
    async with httpx.AsyncClient(base_url=acct.sim.api_base) as http:
        response = await http.post("/video/text/generate", json=body, headers={
            "API-KEY": acct.key, "Ai-trace-id": "moderated-1"})
    assert response.status_code == 200
    assert response.json() == {"ErrCode": 500063, "ErrMsg": PIXVERSE_MODERATION_MESSAGE,
                               "Resp": None}
    assert "blocked-word" in response.headers["x-simulator-detail"]


# -- image-based generation -------------------------------------------------------------------


async def test_image_to_video(acct: Acct) -> None:
    img = await acct.image()
    request = dict(prompt="the knight draws", model="c1", duration=6, quality="1080p")
    submission = await acct.client.image_to_video(models.ImageToVideo(img_id=img, **request))
    assert assert_job(acct, submission, "image_to_video")["credits"] == 18 * 6
    with pytest.raises(ValidationError) as exc:
        await acct.client.image_to_video(models.ImageToVideo(img_id=UNKNOWN_IMAGE, **request))
    assert_api_error(exc, 400032, "img_id")


async def test_template_video(acct: Acct) -> None:
    img = await acct.image()
    submission = await acct.client.template_video(
        models.TemplateVideo(template_id=TEMPLATE_ID, img_id=img, quality="540p"))
    assert_job(acct, submission, "template_video")
    with pytest.raises(ValidationError) as exc:
        await acct.client.template_video(models.TemplateVideo(
            template_id=TEMPLATE_ID, img_ids=[img, UNKNOWN_IMAGE], quality="540p"))
    assert_api_error(exc, 400032, "img_ids[1]")


async def test_transition(acct: Acct) -> None:
    first, last = await acct.image(), await acct.image()
    body = dict(prompt="caterpillar to butterfly", model="v6", duration=5, quality="540p")
    submission = await acct.client.transition(
        models.Transition(first_frame_img=first, last_frame_img=last, **body))
    assert_job(acct, submission, "transition")
    with pytest.raises(ValidationError) as exc:
        await acct.client.transition(
            models.Transition(first_frame_img=first, last_frame_img=UNKNOWN_IMAGE, **body))
    assert_api_error(exc, 400032, "last_frame_img")


async def test_fusion(acct: Acct) -> None:
    dog, room = await acct.image(), await acct.image()

    def fusion(room_id: int) -> models.Fusion:
        return models.Fusion(
            image_references=[{"type": "subject", "img_id": dog, "ref_name": "dog"},
                              {"type": "background", "img_id": room_id, "ref_name": "room"}],
            prompt="@dog chases a ball across @room ", model="v6", duration=5, quality="720p",
            aspect_ratio="16:9")

    assert_job(acct, await acct.client.fusion(fusion(room)), "fusion")
    with pytest.raises(ValidationError) as exc:
        await acct.client.fusion(fusion(UNKNOWN_IMAGE))
    assert_api_error(exc, 400032, "image_references[1].img_id")


async def test_multi_transition_echoes_its_credits(acct: Acct) -> None:
    frames = [await acct.image() for _ in range(3)]

    def request(last: int) -> models.MultiTransition:
        return models.MultiTransition(
            multi_transition=[{"img_id": frames[0], "duration": 3, "prompt": "sunrise"},
                              {"img_id": frames[1], "duration": 4}, {"img_id": last}],
            model="v5", quality="540p")

    submission = await acct.client.multi_transition(request(frames[2]))
    assert submission.credits == 105  # the official example's price, echoed
    assert assert_job(acct, submission, "multi_transition")["credits"] == 105
    with pytest.raises(ValidationError) as exc:
        await acct.client.multi_transition(request(UNKNOWN_IMAGE))
    assert_api_error(exc, 400032, "multi_transition[2]")


async def test_image_template_and_image_result(acct: Acct) -> None:
    img = await acct.image()
    submission = await acct.client.image_template(
        models.ImageTemplate(img_ids=[img], template_id=IMAGE_TEMPLATE_ID))
    assert submission.video_id is None and submission.credits == 20
    assert_job(acct, submission, "image_template")
    image_id = submission.job_id
    first = await acct.client.image_result(image_id)
    assert (first.image_id, first.status, first.url) == (image_id, 5, "")
    done = await wait_status(lambda: acct.client.image_result(image_id), 1)
    assert done.raw["customer_paths"]["gen_img_req_img_ids"] == [img]
    async with httpx.AsyncClient() as http:
        assert (await http.get(done.url)).content.startswith(b"\x89PNG")
    with pytest.raises(ValidationError) as exc:
        await acct.client.image_template(
            models.ImageTemplate(img_ids=[UNKNOWN_IMAGE], template_id=IMAGE_TEMPLATE_ID))
    assert_api_error(exc, 400032)
    with pytest.raises(NotFoundError):
        await acct.client.image_result(UNKNOWN_IMAGE)
    with pytest.raises(NotFoundError):  # an image job is not a video
        await acct.client.video_result(image_id)


# -- endpoints that edit a video ----------------------------------------------------------------


async def test_lip_sync_with_tts(acct: Acct) -> None:
    source = await acct.source_video()
    submission = await acct.client.lip_sync(models.LipSync(
        source_video_id=source, lip_sync_tts_speaker_id="8",
        lip_sync_tts_content="Welcome back!"))
    assert_job(acct, submission, "lip_sync")
    with pytest.raises(ValidationError) as exc:
        await acct.client.lip_sync(models.LipSync(
            source_video_id=source, lip_sync_tts_speaker_id="99", lip_sync_tts_content="hi"))
    assert_api_error(exc, 400017, "lip_sync_tts_speaker_id")


async def test_lip_sync_with_uploaded_audio(acct: Acct) -> None:
    video = await acct.media("clip.mp4")
    audio = await acct.media("voice.mp3", b"a" * 32_000)  # about 2 s at 128 kbit/s
    submission = await acct.client.lip_sync(
        models.LipSync(video_media_id=video, audio_media_id=audio))
    assert assert_job(acct, submission, "lip_sync")["credits"] == 8  # 4 credits/s
    with pytest.raises(NotFoundError) as exc:
        await acct.client.lip_sync(
            models.LipSync(video_media_id=video, audio_media_id=UNKNOWN_IMAGE))
    assert_api_error(exc, 500008, "audio_media_id")


async def test_tts_speakers(acct: Acct) -> None:
    page = await acct.client.tts_speakers(page_num=1, page_size=30)
    assert page.total == 15 and len(page.items) == 15
    assert page.items[0] == {"speaker_id": "7", "name": "Harper"}
    assert len((await acct.client.tts_speakers(page_num=2, page_size=10)).items) == 5
    with pytest.raises(ValidationError) as exc:
        await acct.client.tts_speakers(page_size=0)
    assert_api_error(exc, 400017, "page_size")


@pytest.mark.parametrize("form", ["restyle_id", "restyle_prompt"])
async def test_restyle(acct: Acct, form: str) -> None:
    source = await acct.source_video()
    value: Any = 17 if form == "restyle_id" else "clay figures"
    submission = await acct.client.restyle(models.Restyle(source_video_id=source,
                                                          **{form: value}))
    job = assert_job(acct, submission, "restyle")
    assert submission.credits == job["credits"] > 0  # restyle echoes its price
    assert job["payload"][form] == value


async def test_restyle_rejects_an_unlisted_effect(acct: Acct) -> None:
    source = await acct.source_video()
    with pytest.raises(ValidationError) as exc:
        await acct.client.restyle(models.Restyle(source_video_id=source, restyle_id=999))
    assert_api_error(exc, 400017, "restyle_id")


async def test_restyle_effects(acct: Acct) -> None:
    page = await acct.client.restyle_effects(page_num=1, page_size=5)
    assert page.total is not None and page.total >= 5 and len(page.items) == 5
    assert {"restyle_id", "name"} <= set(page.items[0])
    with pytest.raises(ValidationError) as exc:
        await acct.client.restyle_effects(page_size=0)
    assert_api_error(exc, 400017, "page_size")


async def test_swap_mask_then_swap(acct: Acct) -> None:
    source = await acct.source_video()
    masks = await acct.client.swap_mask(models.SwapMask(source_video_id=source, keyframe_id=1))
    assert masks.keyframe_id == 1 and masks.credits == 5
    assert masks.keyframe_url.startswith(acct.sim.base)
    assert len(masks.masks) >= 1
    for mask in masks.masks:
        assert isinstance(mask.mask_id, str) and mask.mask_id.isdigit()
        assert mask.mask_name and mask.mask_url.startswith(acct.sim.base)
    assert acct.sim.stats(acct.key)["credits_charged"] == 45 + 5  # source video + masks

    img = await acct.image()

    def swap(mask_id: str) -> models.Swap:
        return models.Swap(source_video_id=source, keyframe_id=1, mask_id=mask_id, img_id=img,
                           quality="540p")

    submission = await acct.client.swap(swap(masks.masks[0].mask_id))
    assert submission.credits == assert_job(acct, submission, "swap")["credits"] > 0
    with pytest.raises(NotFoundError) as exc:
        await acct.client.swap(swap("123"))
    assert_api_error(exc, 500008, "mask_id")


async def test_sound_effect(acct: Acct) -> None:
    source = await acct.source_video()
    submission = await acct.client.sound_effect(models.SoundEffect(
        source_video_id=source, original_sound_switch=True, sound_effect_content="rain"))
    job = assert_job(acct, submission, "sound_effect")
    assert job["credits"] == 10


async def test_extend(acct: Acct) -> None:
    source = await acct.source_video()
    submission = await acct.client.extend(models.Extend(source_video_id=source, **EXTEND))
    assert_job(acct, submission, "extend")
    generating = (await acct.client.text_to_video(text())).job_id
    with pytest.raises(ValidationError) as exc:  # a source must have succeeded
        await acct.client.extend(models.Extend(source_video_id=generating, **EXTEND))
    assert_api_error(exc, 400017, "source_video_id")


async def test_mimic_echoes_credit_singular(acct: Acct) -> None:
    video = await acct.media("dance.mp4")
    img = await acct.image()
    submission = await acct.client.mimic(
        models.Mimic(video_media_id=video, img_id=img, quality="540p"))
    assert "credit" in submission.raw and "credits" not in submission.raw
    assert submission.credits == 50  # 10 credits/s x 5 s
    assert_job(acct, submission, "mimic")
    with pytest.raises(ValidationError) as exc:
        await acct.client.mimic(
            models.Mimic(video_media_id=video, img_id=UNKNOWN_IMAGE, quality="540p"))
    assert_api_error(exc, 400032, "img_id")


async def test_modify(acct: Acct) -> None:
    video = await acct.media("clip.webm")
    img = await acct.image()
    body: dict[str, Any] = dict(video_media_id=video, prompt="@selection0 is replaced by @img0",
                                img_ids=[img], quality="540p")
    assert_job(acct, await acct.client.modify(models.Modify(**body)), "modify")
    with pytest.raises(NotFoundError) as exc:
        await acct.client.modify(models.Modify(**body, mask_ids=["nope"]))
    assert_api_error(exc, 500008, "mask_ids")


async def test_upscale(acct: Acct) -> None:
    video = await acct.media("clip.mov")
    assert_job(acct, await acct.client.upscale(models.Upscale(video_media_id=video)), "upscale")
    audio = await acct.media("voice.wav", b"a" * 100)
    with pytest.raises(ValidationError) as exc:  # an audio file is not a video
        await acct.client.upscale(models.Upscale(video_media_id=audio))
    assert_api_error(exc, 400017, "video_media_id")


SOURCE_REQUESTS: dict[str, Callable[[int], models.PixVerseRequest]] = {
    "lip_sync": lambda v: models.LipSync(source_video_id=v, lip_sync_tts_speaker_id="8",
                                         lip_sync_tts_content="hello"),
    "restyle": lambda v: models.Restyle(source_video_id=v, restyle_prompt="clay"),
    "swap_mask": lambda v: models.SwapMask(source_video_id=v),
    "sound_effect": lambda v: models.SoundEffect(source_video_id=v, original_sound_switch=True),
    "extend": lambda v: models.Extend(source_video_id=v, **EXTEND),
    "modify": lambda v: models.Modify(source_video_id=v, prompt="make it snow",
                                      quality="540p"),
    "upscale": lambda v: models.Upscale(source_video_id=v),
}


@pytest.mark.parametrize("endpoint", sorted(SOURCE_REQUESTS))
async def test_an_unknown_source_video_is_not_found(acct: Acct, endpoint: str) -> None:
    method = getattr(acct.client, endpoint)
    with pytest.raises(NotFoundError) as exc:
        await method(SOURCE_REQUESTS[endpoint](UNKNOWN_VIDEO))
    assert_api_error(exc, 500008, "source_video_id")
    assert acct.sim.stats(acct.key)["charges"] == 0


# -- uploads --------------------------------------------------------------------------------


async def test_upload_image_from_a_path_a_file_bytes_and_a_url(acct: Acct,
                                                             tmp_path: Path) -> None:
    # Over Starlette's 1 MB spool threshold, so the file crosses the wire in many chunks.
    content = PNG + bytes(range(256)) * (3 * 4096)
    path = tmp_path / "still.png"
    path.write_bytes(content)
    from_path = await acct.client.upload_image(path)
    with path.open("rb") as handle:
        from_file = await acct.client.upload_image(handle)
    from_bytes = await acct.client.upload_image(PNG, filename="b.png")
    from_url = await acct.client.upload_image(url="https://example.com/cat.jpg")
    ids = [from_path.img_id, from_file.img_id, from_bytes.img_id, from_url.img_id]
    assert all(i > 2**53 for i in ids) and len(set(ids)) == 4
    uploads = {u["id"]: u for u in acct.sim.sim_get("/uploads", params={"api_key": acct.key})[
        "uploads"]}
    assert set(uploads) == set(ids)  # the exact ids the simulator issued
    digest = hashlib.sha256(content).hexdigest()
    for uploaded in (from_path, from_file):
        record = uploads[uploaded.img_id]
        assert (record["filename"], record["size"], record["sha256"]) == (
            "still.png", len(content), digest)
    assert uploads[from_url.img_id]["source_url"] == "https://example.com/cat.jpg"
    async with httpx.AsyncClient() as http:
        assert (await http.get(from_path.img_url)).content == content
        assert (await http.get(from_bytes.img_url)).content == PNG


@pytest.mark.parametrize(("name", "content"), [("nsfw-photo.png", PNG),
                                               ("ok.png", PNG + b"..moderate-me..")])
async def test_upload_image_moderation_reject(acct: Acct, name: str, content: bytes) -> None:
    with pytest.raises(ModerationError) as exc:
        await acct.client.upload_image(content, filename=name)
    assert_api_error(exc, 500052)
    assert exc.value.http_status == 500  # the lower-case ``err_code`` envelope variant
    assert acct.sim.sim_get("/uploads", params={"api_key": acct.key})["uploads"] == []


@pytest.mark.parametrize(("name", "media_type"), [("clip.mp4", "video"), ("voice.wav", "audio"),
                                                  ("voice.mp3", "audio")])
async def test_upload_media(acct: Acct, name: str, media_type: str) -> None:
    uploaded = await acct.client.upload_media(b"m" * 100, filename=name)
    assert uploaded.media_type == media_type and uploaded.media_id > 2**53
    async with httpx.AsyncClient() as http:
        assert (await http.get(uploaded.url)).content == b"m" * 100
    by_url = await acct.client.upload_media(url=f"https://example.com/{name}")
    assert by_url.media_type == media_type


async def test_upload_media_errors(acct: Acct) -> None:
    with pytest.raises(ModerationError) as moderated:
        await acct.client.upload_media(b"m" * 100, filename="nsfw-clip.mp4")
    assert_api_error(moderated, 500063)
    with pytest.raises(ValidationError) as bad_url:
        await acct.client.upload_media(url="ftp://example.com/clip.mp4")
    assert_api_error(bad_url, 400017, "file_url")


async def test_effect_templates(acct: Acct) -> None:
    page = await acct.client.effect_templates(type=1, page=1, page_size=10)
    assert page.total is not None and page.total >= 1
    assert page.items[0]["template_id"] == TEMPLATE_ID  # exact, above 2**48
    assert {item["template_id"] for item in
            (await acct.client.effect_templates(type=2)).items} >= {IMAGE_TEMPLATE_ID}
    with pytest.raises(ValidationError) as exc:
        await acct.client.effect_templates(type=3)
    assert_api_error(exc, 400017, "type")


# -- errors every endpoint shares ----------------------------------------------------------------

CALLS: dict[str, Callable[[CountingClient], Awaitable[Any]]] = {
    "text_to_video": lambda c: c.text_to_video(text()),
    "image_to_video": lambda c: c.image_to_video(models.ImageToVideo(
        img_id=1, prompt="p", model="v5", duration=5, quality="540p")),
    "template_video": lambda c: c.template_video(models.TemplateVideo(
        template_id=TEMPLATE_ID, img_id=1, quality="540p")),
    "transition": lambda c: c.transition(models.Transition(
        first_frame_img=1, last_frame_img=2, prompt="p", model="v5", duration=5,
        quality="540p")),
    "lip_sync": lambda c: c.lip_sync(models.LipSync(video_media_id=1, audio_media_id=2)),
    "tts_speakers": lambda c: c.tts_speakers(),
    "fusion": lambda c: c.fusion(models.Fusion(
        image_references=[{"type": "subject", "img_id": 1, "ref_name": "a"}], prompt="@a ",
        model="v5", duration=5, quality="540p", aspect_ratio="16:9")),
    "multi_transition": lambda c: c.multi_transition(models.MultiTransition(
        multi_transition=[{"img_id": 1, "duration": 3}, {"img_id": 2}], model="v5",
        quality="540p")),
    "restyle": lambda c: c.restyle(models.Restyle(source_video_id=1, restyle_id=17)),
    "restyle_effects": lambda c: c.restyle_effects(),
    "swap_mask": lambda c: c.swap_mask(models.SwapMask(source_video_id=1)),
    "swap": lambda c: c.swap(models.Swap(source_video_id=1, keyframe_id=1, mask_id="1",
                                         img_id=1, quality="540p")),
    "sound_effect": lambda c: c.sound_effect(models.SoundEffect(source_video_id=1)),
    "extend": lambda c: c.extend(models.Extend(source_video_id=1, **EXTEND)),
    "video_result": lambda c: c.video_result(UNKNOWN_VIDEO),
    "mimic": lambda c: c.mimic(models.Mimic(video_media_id=1, img_id=1, quality="540p")),
    "modify": lambda c: c.modify(models.Modify(video_media_id=1, prompt="p", quality="540p")),
    "image_template": lambda c: c.image_template(models.ImageTemplate(
        img_ids=[1], template_id=IMAGE_TEMPLATE_ID)),
    "image_result": lambda c: c.image_result(UNKNOWN_IMAGE),
    "upload_image": lambda c: c.upload_image(PNG, filename="a.png"),
    "upload_media": lambda c: c.upload_media(b"v", filename="a.mp4"),
    "balance": lambda c: c.balance(),
    "effect_templates": lambda c: c.effect_templates(),
    "upscale": lambda c: c.upscale(models.Upscale(video_media_id=1)),
    "avatar": lambda c: c.avatar(experimental.Avatar(img_id=1, quality="540p",
                                                     audio_media_id=2)),
    "agent": lambda c: c.agent(experimental.Agent(agent_id=1)),
    "music_mv": lambda c: c.music_mv(experimental.MusicMV(
        mv_agent_type="vibe_mv", audio_media_id=1, aspect_ratio="16:9", quality="720p")),
    "audio_verification": lambda c: c.verify_audio(1),
    "create_tts_speaker": lambda c: c.create_tts_speaker("voice", 1),
    "delete_tts_speaker": lambda c: c.delete_tts_speaker("900001"),
    "tts_speaker_list": lambda c: c.tts_speakers_by_type(),
    "usage_detail": lambda c: c.usage_detail(),
}


def test_every_endpoint_has_a_call_here() -> None:
    from service.pixverse.endpoints import ENDPOINTS

    aliases = {"lip_sync_tts_list": "tts_speakers", "restyle_effect_list": "restyle_effects",
               "account_balance": "balance", "effects_template_list": "effect_templates"}
    assert {aliases.get(name, name) for name in ENDPOINTS} == set(CALLS)


@pytest.mark.parametrize("endpoint", list(CALLS))
async def test_an_unknown_api_key_is_an_authentication_error(shared_sim: Sim,
                                                             endpoint: str) -> None:
    async with shared_sim.client("no-such-key", get_retries=0) as client:
        with pytest.raises(AuthenticationError) as exc:
            await CALLS[endpoint](client)
        assert len(client.transport.requests) == 1
    assert_api_error(exc, 10002, "Invalid API-KEY")
    assert exc.value.retryable is False
    assert shared_sim.stats("no-such-key") == {}


def _too_long_for_v5() -> models.TextToVideo:
    return text(duration=10)  # raises while the request is built


LOCAL_ERRORS: dict[str, tuple[Callable[[CountingClient], Awaitable[Any]], str]] = {
    "duration not offered": (lambda c: c.text_to_video(_too_long_for_v5()), "duration"),
    "unknown aspect ratio": (
        lambda c: c.text_to_video(text(aspect_ratio="21:9")), "aspect_ratio"),
    "request of another endpoint": (lambda c: c.text_to_video(  # type: ignore[arg-type]
        models.Upscale(source_video_id=1)), "request"),
    "swap mask is not a job": (
        lambda c: c.submit(models.SwapMask(source_video_id=1)), "request"),
    "two video sources": (lambda c: c.upscale(
        models.Upscale(source_video_id=1, video_media_id=2)), "source_video_id"),
    "video id not positive": (lambda c: c.video_result(0), "video_id"),
    "image id not an int": (lambda c: c.image_result("12"), "image_id"),  # type: ignore[arg-type]
    "gif upload": (lambda c: c.upload_image(b"GIF89a", filename="a.gif"), "image"),
    "text file as media": (lambda c: c.upload_media(b"hello", filename="notes.txt"), "file"),
    "upload with file and url": (
        lambda c: c.upload_image(PNG, filename="a.png", url="https://example.com/a.png"),
        "image|image_url"),
    "upload with neither": (lambda c: c.upload_media(), "file|file_url"),
    "missing upload path": (lambda c: c.upload_image("/no/such/file.png"), "image"),
}


@pytest.mark.parametrize("case", list(LOCAL_ERRORS))
async def test_local_validation_sends_nothing(shared_sim: Sim, case: str) -> None:
    call, field = LOCAL_ERRORS[case]
    key = shared_sim.new_account()
    before = shared_sim.all_stats()
    async with shared_sim.client(key) as client:
        with pytest.raises(InvalidRequest) as exc:
            await call(client)
        assert client.transport.requests == []
    assert exc.value.field.startswith(field), exc.value
    after = shared_sim.all_stats()
    assert key not in after["keys"]  # the simulator never saw this key
    assert after["jobs_total"] == before["jobs_total"]
