"""The endpoints REFERENCE.md §14 adds, through ``PixVerseClient`` against the simulator under
uvicorn: a success and a documented error each. All but fusion's omni mode rest on one source
(experimental); omni mode on one maintained third-party client."""

from __future__ import annotations

import pytest

from service.pixverse import PixVerseClient, experimental, models
from service.pixverse.errors import ModerationError, NotFoundError, ValidationError
from service.simulator import media
from tests.contract.conftest import CountingClient, Sim
from tests.contract.test_endpoints import (
    UNKNOWN_IMAGE,
    Acct,
    acct,
    assert_api_error,
    assert_job,
    text,
    wait_status,
)

__all__ = ["acct"]  # fixture

UNKNOWN_MEDIA = 392_200_000_000_000_000  # below the simulator's first media id: never issued
MODERATION = "The input content does not comply with platform specifications, please re-enter"


async def test_avatar(acct: Acct) -> None:
    img, audio = await acct.image(), await acct.media("voice.mp3")
    submission = await acct.client.avatar(experimental.Avatar(
        img_id=img, quality="720p", lip_sync_tts_speaker_id="7",
        lip_sync_tts_content="Here is the latest update."))
    assert_job(acct, submission, "avatar")
    done = await wait_status(lambda: acct.client.video_result(submission.job_id), 1)
    assert done.has_audio is True
    with pytest.raises(ValidationError) as exc:
        await acct.client.avatar(experimental.Avatar(img_id=UNKNOWN_IMAGE, quality="720p",
                                                     audio_media_id=audio))
    assert_api_error(exc, 400032, "img_id")


async def test_agent(acct: Acct) -> None:
    img = await acct.image()

    def viral(img_id: int) -> experimental.Agent:
        return experimental.Agent(
            agent_id=experimental.VIRAL_RECREATION_AGENT, prompt="Recreate the pacing.",
            quality="720p", img_references=[{"img_id": img_id}],
            video_references=[{"video_url": "https://cdn.example.test/reference.mp4"}])

    submission = await acct.client.agent(viral(img))
    assert_job(acct, submission, "agent")
    await wait_status(lambda: acct.client.video_result(submission.job_id), 1)
    with pytest.raises(ValidationError) as exc:
        await acct.client.agent(viral(UNKNOWN_IMAGE))
    assert_api_error(exc, 400032, "img_references[0].img_id")


async def test_music_mv_needs_verified_audio(acct: Acct) -> None:
    song = await acct.media("song.mp3")
    request = experimental.MusicMV(mv_agent_type="vibe_mv", audio_media_id=str(song),
                                   aspect_ratio="16:9", quality="720p", music_style="Pop")
    with pytest.raises(ValidationError) as exc:
        await acct.client.music_mv(request)
    assert_api_error(exc, 701020, "audio verification")  # the kit's recorded answer
    assert await acct.client.verify_audio(song) == {}
    submission = await acct.client.music_mv(request)
    assert_job(acct, submission, "music_mv")
    await wait_status(lambda: acct.client.video_result(submission.job_id), 1)


async def test_audio_verification(acct: Acct) -> None:
    assert await acct.client.verify_audio(await acct.media("song.wav")) == {}
    with pytest.raises(ModerationError) as exc:
        await acct.client.verify_audio(await acct.media("blocked-word-song.mp3"))
    assert_api_error(exc, 500063)
    assert exc.value.err_msg == MODERATION
    with pytest.raises(NotFoundError) as missing:
        await acct.client.verify_audio(UNKNOWN_MEDIA)
    assert_api_error(missing, 500008, "audio_media_id")


async def test_custom_voices_create_list_use_delete(acct: Acct) -> None:
    sample = await acct.media("sample.mp3")
    voice = await acct.client.create_tts_speaker("Narrator", sample)
    assert voice.speaker_id and voice.name == "Narrator"
    custom = await acct.client.tts_speakers_by_type("custom")
    assert [(s["speaker_id"], s["name"]) for s in custom.items] == [(voice.speaker_id,
                                                                      "Narrator")]
    system = await acct.client.tts_speakers_by_type("system", page_size=50)
    assert system.total == 15 and voice.speaker_id not in {s["speaker_id"] for s in system.items}
    assert (await acct.client.tts_speakers_by_type()).total == 16
    lip_sync = await acct.client.lip_sync(models.LipSync(
        source_video_id=await acct.source_video(), lip_sync_tts_speaker_id=voice.speaker_id,
        lip_sync_tts_content="Welcome back."))
    assert_job(acct, lip_sync, "lip_sync")
    await acct.client.delete_tts_speaker(voice.speaker_id)
    assert (await acct.client.tts_speakers_by_type("custom")).items == ()
    with pytest.raises(NotFoundError) as exc:
        await acct.client.delete_tts_speaker(voice.speaker_id)
    assert_api_error(exc, 500008, voice.speaker_id)


async def test_custom_voice_errors(acct: Acct) -> None:
    with pytest.raises(NotFoundError) as exc:
        await acct.client.create_tts_speaker("Narrator", UNKNOWN_MEDIA)
    assert_api_error(exc, 500008, "audio_media_id")
    with pytest.raises(ValidationError) as bad_type:
        await acct.client.tts_speakers_by_type("robots")
    assert_api_error(bad_type, 400017, "speaker_type")
    with pytest.raises(ValidationError) as system:
        await acct.client.delete_tts_speaker("7")
    assert_api_error(system, 400017, "system voice")


async def test_usage_detail(acct: Acct) -> None:
    made = (await acct.client.text_to_video(text())).job_id
    moderated = (await acct.client.text_to_video(text(prompt="nsfw lantern"))).job_id
    await wait_status(lambda: acct.client.video_result(moderated), 7)
    usage = await acct.client.usage_detail()
    assert [(i["video_id"], i["credits_status"], i["credits"]) for i in usage.items] == [
        (made, "consume", 45), (moderated, "consume", 45), (moderated, "refund", 45)]
    assert usage.has_more is False and usage.next_cursor == ""
    first = await acct.client.usage_detail(experimental.UsageDetail(limit=2))
    assert first.has_more and len(first.items) == 2
    rest = await acct.client.usage_detail(experimental.UsageDetail(cursor=first.next_cursor))
    assert [i["credits_status"] for i in rest.items] == ["refund"]
    refunds = await acct.client.usage_detail(experimental.UsageDetail(credits_status="refund"))
    assert [i["video_id"] for i in refunds.items] == [moderated]
    with pytest.raises(ValidationError) as exc:
        await acct.client.usage_detail(experimental.UsageDetail(start_time="yesterday"))
    assert_api_error(exc, 400013, "start_time")


async def test_fusion_omni_mode(acct: Acct) -> None:
    clip = (await acct.client.upload_media(media.SAMPLE_MP4)).media_id

    def omni(video_media_id: int) -> models.Fusion:
        return models.Fusion(
            prompt="@hero dances like @clip", model="v6", duration=0, quality="720p",
            aspect_ratio="auto", reference_mode="omni",
            video_references=[{"ref_name": "clip", "video_media_id": video_media_id}])

    submission = await acct.client.fusion(omni(clip))
    job = assert_job(acct, submission, "fusion")
    assert job["credits"] == 2 * 9 * 5  # video references double; duration 0: PixVerse picks
    await wait_status(lambda: acct.client.video_result(submission.job_id), 1)
    with pytest.raises(NotFoundError) as exc:
        await acct.client.fusion(omni(UNKNOWN_MEDIA))
    assert_api_error(exc, 500008, "video_references[0].video_media_id")


async def test_media_upload_reports_the_video_size(acct: Acct) -> None:
    uploaded = await acct.client.upload_media(media.SAMPLE_MP4)
    assert (uploaded.media_type, uploaded.width, uploaded.height) == ("video", 320, 180)
    audio = await acct.client.upload_media(b"a" * 100, filename="v.wav")
    assert (audio.width, audio.height) == (None, None)


async def test_the_base_url_may_be_the_host_alone(shared_sim: Sim) -> None:
    key = shared_sim.new_account()
    environ = {"PIXVERSE_BASE_URL": shared_sim.base + "/", "PIXVERSE_API_KEY": key}
    async with PixVerseClient.from_env(environ) as client:
        submission = await client.text_to_video(text())
        assert (await client.video_result(submission.job_id)).status == 5
    async with CountingClient(key, base_url=shared_sim.base) as client:
        assert (await client.balance()).total == 100_000 - 45
        assert str(client.transport.requests[0].url) == (
            f"{shared_sim.base}/openapi/v2/account/balance")
