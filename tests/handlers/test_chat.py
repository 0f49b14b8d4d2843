"""The Discord, Teams, Telegram and Apprise handlers against local stand-ins on real uvicorn
(:mod:`service.chat_standins` checks each payload against the service's documentation
and answers the first request with 429 and ``Retry-After``)."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from handlers.apprise_notify import AppriseDeliveryError, AppriseHandler
from handlers.discord import DiscordHandler
from handlers.teams import TeamsHandler
from handlers.telegram import TelegramHandler
from service.handler_api import BaseHandler, PermanentError, Retry
from service.lifecycle import JobState
from tests.handlers.conftest import Harness
from service.chat_standins import StandIn
from tests.support.servers import free_port, running_server

PIXVERSE_URL = "https://media.pixverse.ai/pixverse/mp4/media/web/ori/lantern.mp4"


@dataclasses.dataclass
class Chat:
    standin: StandIn
    base_url: str

    def options(self, handler: str) -> dict[str, str]:
        return {
            "discord": {"webhook_url": f"{self.base_url}/api/webhooks/42/"
                                       f"{self.standin.discord_token}"},
            "teams": {"webhook_url": f"{self.base_url}/workflows/flow-1?sig=SIGxyz"},
            "telegram": {"bot_token": self.standin.telegram_token, "chat_id": "-100123",
                         "api_url": self.base_url},
        }[handler]


@pytest.fixture
async def chat() -> AsyncIterator[Chat]:
    standin = StandIn()
    async with running_server(standin.app) as base_url:
        yield Chat(standin, base_url)


HANDLERS: dict[str, type[BaseHandler]] = {"discord": DiscordHandler, "teams": TeamsHandler,
                                          "telegram": TelegramHandler}


async def _deliver(harness: Harness, chat: Chat, name: str,
                   state: JobState = JobState.SUCCEEDED, *, options: dict[str, Any] | None = None,
                   media: bytes | None = None, last_error: str | None = None,
                   **job_fields: Any) -> Retry:
    """Run ``name``'s handler twice for one job: the stand-in's 429, then the delivery.
    Return the ``Retry`` the first run raised."""
    job, transition, task = await harness.transition(name, state,
                                                     payload={"url": PIXVERSE_URL}, **job_fields)
    if last_error:
        job = await harness.store.update_job(job.id, last_error=last_error)
    if media is not None:
        path = harness.tmp_path / f"{job.id}.mp4"
        path.write_bytes(media)
        await harness.store.update_job(job.id, media_path=str(path), media_sha256="0" * 64,
                                       media_size=len(media))
    handler = HANDLERS[name](harness.settings, {**chat.options(name), **(options or {})})
    with pytest.raises(Retry) as limited:
        await handler.run(job, transition, harness.context(task))
    await handler.run(job, transition, harness.context(task))
    assert chat.standin.problems == []
    return limited.value


@pytest.mark.parametrize("name", sorted(HANDLERS))
async def test_a_rate_limit_is_retried_after_the_services_delay(harness: Harness, chat: Chat,
                                                                name: str) -> None:
    limited = await _deliver(harness, chat, name)
    assert limited.after == 1
    assert chat.standin.requests == 2 and len(chat.standin.of(name)) == 1


@pytest.mark.parametrize("name", sorted(HANDLERS))
async def test_unconfigured_handlers_queue_nothing(harness: Harness, name: str) -> None:
    job, transition, _ = await harness.transition("slack")
    assert not HANDLERS[name](harness.settings, {}).wants(job, transition)


async def test_discord_embed_carries_prompt_state_and_link(harness: Harness,
                                                           chat: Chat) -> None:
    await _deliver(harness, chat, "discord")
    [message] = chat.standin.of("discord")
    [embed] = message["embeds"]
    assert embed["title"] == "text_to_video succeeded"
    assert embed["description"] == "a lantern over a lake"
    assert embed["url"] == PIXVERSE_URL
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    assert fields["State"] == "succeeded" and fields["Credits"] == "20"
    assert message["allowed_mentions"] == {"parse": []}
    assert message["_files"] == {}  # nothing stored here: nothing attached


async def test_discord_attaches_a_stored_video_under_the_limit(harness: Harness,
                                                               chat: Chat) -> None:
    await _deliver(harness, chat, "discord", media=b"\0" * 5000)
    [message] = chat.standin.of("discord")
    [(name, size)] = message["_files"].values()
    assert name.endswith(".mp4") and size == 5000
    assert message["attachments"] == [{"id": 0, "filename": name}]


async def test_discord_leaves_out_a_video_over_the_limit(harness: Harness, chat: Chat) -> None:
    chat.standin.discord_upload_limit = 4000  # the stand-in would answer 413
    await _deliver(harness, chat, "discord", media=b"\0" * 5000,
                   options={"max_attachment_bytes": 4000})
    [message] = chat.standin.of("discord")
    assert message["_files"] == {} and message["embeds"][0]["url"] == PIXVERSE_URL


async def test_discord_refusal_is_permanent_and_keeps_the_token(
        harness: Harness, chat: Chat, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    chat.standin.rate_limit_once = False
    job, transition, task = await harness.transition("discord")
    url = f"{chat.base_url}/api/webhooks/42/revoked-TOKEN"
    with pytest.raises(PermanentError) as refused:
        await DiscordHandler(harness.settings, {"webhook_url": url}).run(
            job, transition, harness.context(task))
    assert "HTTP 404" in str(refused.value)
    assert "revoked-TOKEN" not in str(refused.value) + caplog.text


async def test_discord_failure_shows_the_error(harness: Harness, chat: Chat) -> None:
    await _deliver(harness, chat, "discord", JobState.FAILED, last_error="GPU on fire")
    [message] = chat.standin.of("discord")
    fields = {field["name"]: field["value"] for field in message["embeds"][0]["fields"]}
    assert fields["Error"] == "GPU on fire" and fields["State"] == "failed"


async def test_teams_posts_an_adaptive_card(harness: Harness, chat: Chat) -> None:
    await _deliver(harness, chat, "teams", params={"prompt": "a [link](http://x) *bold*",
                                                   "model": "v6", "duration": 5})
    [message] = chat.standin.of("teams")
    card = message["attachments"][0]["content"]
    texts = [element.get("text") for element in card["body"]]
    assert texts[0] == "text\\_to\\_video succeeded"
    assert texts[1] == "a \\[link\\]\\(http://x\\) \\*bold\\*"  # no link, no bold
    facts = {fact["title"]: fact["value"] for fact in card["body"][2]["facts"]}
    assert facts["Credits"] == "20"
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "Open the video on PixVerse",
                                "url": PIXVERSE_URL}]


async def test_telegram_sends_the_video(harness: Harness, chat: Chat) -> None:
    await _deliver(harness, chat, "telegram")
    [sent] = chat.standin.of("telegram")
    assert sent["method"] == "sendVideo" and sent["video"] == PIXVERSE_URL
    assert sent["chat_id"] == "-100123"
    assert sent["caption"].startswith("text_to_video succeeded\na lantern over a lake\n")


async def test_telegram_falls_back_to_a_message_with_the_link(harness: Harness,
                                                              chat: Chat) -> None:
    chat.standin.refuse_videos = True
    await _deliver(harness, chat, "telegram")
    [sent] = chat.standin.of("telegram")
    assert sent["method"] == "sendMessage"
    assert sent["text"].endswith(f"Open the video on PixVerse: {PIXVERSE_URL}")


async def test_telegram_reports_a_failure_as_a_message(harness: Harness, chat: Chat) -> None:
    await _deliver(harness, chat, "telegram", JobState.FAILED, last_error="GPU on fire")
    [sent] = chat.standin.of("telegram")
    assert sent["method"] == "sendMessage" and "Error: GPU on fire" in sent["text"]


async def test_telegram_errors_never_carry_the_token(harness: Harness, chat: Chat) -> None:
    chat.standin.rate_limit_once = False
    job, transition, task = await harness.transition("telegram")
    handler = TelegramHandler(harness.settings, {**chat.options("telegram"),
                                                 "bot_token": "999:WRONG"})
    with pytest.raises(PermanentError) as refused:
        await handler.run(job, transition, harness.context(task))
    assert "HTTP 401" in str(refused.value) and "WRONG" not in str(refused.value)


# -- Apprise, through its generic JSON endpoint -----------------------------------------------

async def test_apprise_notifies_through_its_json_endpoint(harness: Harness) -> None:
    received: list[dict[str, Any]] = []

    async def receive(request: Request) -> JSONResponse:
        received.append({"path": request.url.path, **json.loads(await request.body())})
        return JSONResponse({})

    app = Starlette(routes=[Route("/notify", receive, methods=["POST"])])
    async with running_server(app) as base_url:
        port = base_url.rsplit(":", 1)[1]
        job, transition, task = await harness.transition(
            "apprise", payload={"url": PIXVERSE_URL})
        handler = AppriseHandler(harness.settings, {"urls": f"json://127.0.0.1:{port}/notify"})
        await handler.run(job, transition, harness.context(task))
    [message] = received
    assert message["path"] == "/notify"
    assert message["title"] == "text_to_video succeeded"
    assert message["type"] == "success"
    assert message["message"].startswith("a lantern over a lake\nState: succeeded\n")
    assert message["message"].endswith(f"Open the video on PixVerse: {PIXVERSE_URL}")


async def test_apprise_failure_is_retried(harness: Harness) -> None:
    job, transition, task = await harness.transition("apprise", JobState.FAILED)
    handler = AppriseHandler(harness.settings,
                             {"urls": [f"json://127.0.0.1:{free_port()}/nobody-home"]})
    assert handler.wants(job, transition)
    with pytest.raises(AppriseDeliveryError):
        await handler.run(job, transition, harness.context(task))
