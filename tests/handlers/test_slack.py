"""The slack handler against a local Slack-compatible receiver on real uvicorn.

Besides the message itself, these tests hold the handler to its promise about the webhook URL,
which is a credential: it must not reach a log record (httpx's included), an exception message
or a traceback, however the delivery ends.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import traceback
from collections.abc import AsyncIterator
from typing import Any

import pytest

from handlers.slack import SlackDeliveryError, SlackHandler, escape, format_duration
from service.handler_api import PermanentError, Retry, TransientError
from service.lifecycle import JobState
from service.media import MediaLinks
from service.settings import Settings
from service.store import Job
from tests.handlers.conftest import Harness
from tests.support.servers import free_port, running_server
from tests.support.slack import SlackReceiver

SECRET = "SECRETxyz"
WEBHOOK_PATH = f"/services/T000/B000/{SECRET}"
PIXVERSE_URL = "https://media.pixverse.ai/pixverse/mp4/media/web/ori/lantern.mp4"


@dataclasses.dataclass
class Slack:
    receiver: SlackReceiver
    base_url: str

    @property
    def webhook_url(self) -> str:
        return self.base_url + WEBHOOK_PATH


@pytest.fixture
async def slack() -> AsyncIterator[Slack]:
    receiver = SlackReceiver(path=WEBHOOK_PATH)
    async with running_server(receiver.app) as base_url:
        yield Slack(receiver, base_url)


def _settings(harness: Harness, webhook_url: str, **changes: Any) -> Settings:
    return dataclasses.replace(harness.settings, slack_webhook_url=webhook_url, **changes)


async def _notify(harness: Harness, settings: Settings, state: JobState = JobState.SUCCEEDED,
                  *, payload: dict[str, Any] | None = None, generation_seconds: float = 72,
                  **job_fields: Any) -> Job:
    """Run the handler for a job that reached ``state`` ``generation_seconds`` after it was
    created; return the job."""
    job, transition, task = await harness.transition(
        "slack", state, payload={"url": PIXVERSE_URL, **(payload or {})}, **job_fields)
    transition = dataclasses.replace(transition,
                                     received_at=job.created_at + generation_seconds)
    await SlackHandler(settings, {}).run(job, transition, harness.context(task,
                                                                          settings=settings))
    return job


def _fields(message: dict[str, Any]) -> dict[str, str]:
    """The facts section as ``{label: value}``."""
    [section] = [b for b in message["blocks"] if "fields" in b]
    pairs = (field["text"].split("\n", 1) for field in section["fields"])
    return {label.strip("*"): value for label, value in pairs}


def _texts(message: dict[str, Any]) -> str:
    return json.dumps(message, ensure_ascii=False)


def _link(message: dict[str, Any]) -> str:
    [text] = [b["text"]["text"] for b in message["blocks"]
              if b["type"] == "section" and "text" in b and b["text"]["text"].startswith("<")]
    return str(text[1:text.index("|")])


async def test_success_message_carries_the_facts(harness: Harness, slack: Slack) -> None:
    settings = _settings(harness, slack.webhook_url)
    job = await _notify(harness, settings, payload={"credits": 45})

    [message] = slack.receiver.received
    assert message["text"].startswith(":white_check_mark: text_to_video succeeded")
    assert "a lantern over a lake" in message["text"]
    header = message["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["text"] == ":white_check_mark: text_to_video succeeded"
    assert message["blocks"][1]["text"]["text"] == "*Prompt*\n>a lantern over a lake"
    assert _fields(message) == {
        "Kind": "`text_to_video`", "State": ":white_check_mark: succeeded",
        "Video length": "5s", "Generation time": "1m 12s", "Credits": "45",
        "Job": f"`{job.id}`",
    }
    assert _link(message) == PIXVERSE_URL
    assert "Error" not in _texts(message)


async def test_failure_message_carries_the_error(harness: Harness, slack: Slack) -> None:
    settings = _settings(harness, slack.webhook_url)
    job, transition, task = await harness.transition("slack", JobState.FAILED)
    # Set after the task was queued: the handler must read the job afresh.
    await harness.store.update_job(job.id, last_error="ErrCode 500054: <generation> failed")
    await SlackHandler(settings, {}).run(job, transition, harness.context(task, settings=settings))

    [message] = slack.receiver.received
    assert message["blocks"][0]["text"]["text"] == ":x: text_to_video failed"
    assert _fields(message)["State"] == ":x: failed"
    errors = [b["text"]["text"] for b in message["blocks"]
              if "text" in b and b["text"]["text"].startswith("*Error*")]
    assert errors == ["*Error*\n>ErrCode 500054: &lt;generation&gt; failed"]
    assert not any(b["type"] == "section" and b.get("text", {}).get("text", "").startswith("<")
                   for b in message["blocks"])  # no video, no link


async def test_a_downloaded_video_gets_pixhooks_signed_link(harness: Harness,
                                                            slack: Slack) -> None:
    settings = _settings(harness, slack.webhook_url, public_url="https://pixhook.example.com/",
                         secret_key="test-key")
    job, transition, task = await harness.transition("slack", payload={"url": PIXVERSE_URL})
    # The download handler finishes after the task was queued, as in the worker.
    await harness.store.update_job(job.id, media_path=str(harness.tmp_path / "media" / "v.mp4"),
                                   media_sha256="0" * 64, media_size=1024)
    await SlackHandler(settings, {}).run(job, transition, harness.context(task, settings=settings))

    [message] = slack.receiver.received
    link = _link(message)
    prefix = "https://pixhook.example.com/media/"
    assert link.startswith(prefix)
    assert MediaLinks(settings).job_id(link.removeprefix(prefix)) == job.id
    assert "link valid for 7d" in _texts(message)


@pytest.mark.parametrize("public_url", ["", "https://pixhook.example.com"])
async def test_otherwise_the_link_is_pixverses(harness: Harness, slack: Slack,
                                               public_url: str) -> None:
    settings = _settings(harness, slack.webhook_url, public_url=public_url)
    job, transition, task = await harness.transition("slack", payload={"url": PIXVERSE_URL})
    if not public_url:  # downloaded, but no public URL to link it from
        await harness.store.update_job(job.id, media_path=str(harness.tmp_path / "v.mp4"))
    # (with a public URL: reachable, but nothing downloaded)
    await SlackHandler(settings, {}).run(job, transition, harness.context(task, settings=settings))
    assert _link(slack.receiver.received[0]) == PIXVERSE_URL


async def test_prompts_are_escaped_and_shortened(harness: Harness, slack: Slack) -> None:
    settings = _settings(harness, slack.webhook_url)
    prompt = "<script>alert(1)</script> & <!channel> " + "long " * 100
    await _notify(harness, settings, params={"prompt": prompt, "model": "v6", "duration": 5,
                                             "quality": "540p"})
    [message] = slack.receiver.received
    quoted = message["blocks"][1]["text"]["text"]
    assert quoted.startswith("*Prompt*\n>&lt;script&gt;alert(1)&lt;/script&gt; &amp; "
                             "&lt;!channel&gt; long")
    assert quoted.endswith("…")
    assert "<script>" not in _texts(message) and "<!channel>" not in _texts(message)
    assert len(quoted.removeprefix("*Prompt*\n>")) < 300 + 60  # 300 chars plus entities


async def test_other_kinds_use_their_prompt_parameter(harness: Harness, slack: Slack) -> None:
    settings = _settings(harness, slack.webhook_url)
    await _notify(harness, settings, kind="restyle",
                  params={"restyle_prompt": "as a watercolour", "source_video_id": 1})
    [message] = slack.receiver.received
    assert message["blocks"][1]["text"]["text"] == "*Prompt*\n>as a watercolour"
    assert "Video length" not in _fields(message)


async def test_the_option_overrides_the_setting(harness: Harness, slack: Slack) -> None:
    settings = _settings(harness, "http://127.0.0.1:9/services/never/used/here")
    job, transition, task = await harness.transition("slack")
    options = {"webhook_url": slack.webhook_url}
    handler = SlackHandler(settings, options)
    assert handler.wants(job, transition)
    await handler.run(job, transition, harness.context(task, options=options, settings=settings))
    assert len(slack.receiver.received) == 1


async def test_no_url_no_task(harness: Harness) -> None:
    job, transition, _ = await harness.transition("slack")
    assert not SlackHandler(_settings(harness, ""), {}).wants(job, transition)
    assert SlackHandler(_settings(harness, ""), {"webhook_url": "https://hooks.slack.com/x"}
                        ).wants(job, transition)


# -- how delivery ends; the webhook URL stays secret in every case --------------------------

async def test_rate_limit_retries_after_slacks_delay(
        harness: Harness, slack: Slack, caplog: pytest.LogCaptureFixture) -> None:
    _log_everything(caplog)
    error = await _fail(harness, slack, "429")
    assert isinstance(error, Retry) and error.after == 1
    _assert_secret_kept(caplog, error)


async def test_after_a_rate_limit_the_next_run_delivers(harness: Harness, slack: Slack) -> None:
    settings = _settings(harness, slack.webhook_url)
    job, transition, task = await harness.transition("slack")
    handler = SlackHandler(settings, {})
    slack.receiver.refuse_next(1, status=429)
    with pytest.raises(Retry):
        await handler.run(job, transition, harness.context(task, settings=settings))
    await handler.run(job, transition, harness.context(task, settings=settings))
    assert slack.receiver.requests == 2 and len(slack.receiver.received) == 1


async def test_a_revoked_webhook_is_permanent(
        harness: Harness, slack: Slack, caplog: pytest.LogCaptureFixture) -> None:
    _log_everything(caplog)
    error = await _fail(harness, slack, "404")
    assert isinstance(error, PermanentError)
    assert str(error) == "Slack refused the message: HTTP 404: no_service"
    _assert_secret_kept(caplog, error)


async def test_a_server_error_is_retried_with_backoff(
        harness: Harness, slack: Slack, caplog: pytest.LogCaptureFixture) -> None:
    _log_everything(caplog)
    error = await _fail(harness, slack, "500")
    # The worker backs off on a TransientError; only Retry and PermanentError end otherwise.
    assert isinstance(error, SlackDeliveryError) and isinstance(error, TransientError)
    assert not isinstance(error, Retry | PermanentError)
    assert error.status == 500 and "internal_error" in str(error)
    _assert_secret_kept(caplog, error)


async def test_an_unreachable_slack_is_retried_with_backoff(
        harness: Harness, slack: Slack, caplog: pytest.LogCaptureFixture) -> None:
    _log_everything(caplog)
    error = await _fail(harness, slack, "refused")
    assert isinstance(error, SlackDeliveryError) and isinstance(error, TransientError)
    assert str(error) == "Slack request failed: ConnectError"
    _assert_secret_kept(caplog, error, requested=False)


async def test_a_delivered_message_logs_no_url(
        harness: Harness, slack: Slack, caplog: pytest.LogCaptureFixture) -> None:
    _log_everything(caplog)
    await _notify(harness, _settings(harness, slack.webhook_url))
    assert slack.receiver.received
    _assert_secret_kept(caplog, None)

async def _fail(harness: Harness, slack: Slack, scenario: str) -> Exception:
    """Run the handler into a failure; log it as the worker does; return the exception."""
    url = slack.webhook_url
    if scenario == "404":  # a revoked webhook
        url = slack.base_url + "/services/T000/B000/SECRETxyz-revoked"
    elif scenario == "refused":  # nothing listens there
        url = f"http://127.0.0.1:{free_port()}{WEBHOOK_PATH}"
    else:
        slack.receiver.refuse_next(1, status=int(scenario))
    settings = _settings(harness, url)
    job, transition, task = await harness.transition("slack")
    context = harness.context(task, settings=settings)
    with pytest.raises(Exception) as caught:
        await SlackHandler(settings, {}).run(job, transition, context)
    # The worker logs the message, and the traceback for an unexpected exception.
    context.logger.warning("task failed: %s", caught.value, exc_info=caught.value)
    return caught.value


def _log_everything(caplog: pytest.LogCaptureFixture) -> None:
    # The app quiets httpx's request log process-wide; an operator debugging may turn it back
    # on, and the handler's redaction must hold then too.
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="httpx")


def _assert_secret_kept(caplog: pytest.LogCaptureFixture, error: BaseException | None, *,
                        requested: bool = True) -> None:
    """No log record (formatted with its traceback) and no exception text names the URL."""
    formatter = logging.Formatter("%(name)s %(message)s")
    logged = "\n".join(formatter.format(record) for record in caplog.records)
    if requested:  # httpx did log the request: redaction, not silence, kept the URL out
        assert "HTTP Request: POST" in logged
    assert SECRET not in logged
    if error is not None:
        assert SECRET not in "".join(traceback.format_exception(error))


def test_durations_read_like_a_person_wrote_them() -> None:
    assert format_duration(0) == "0s"
    assert format_duration(5) == "5s"
    assert format_duration(72) == "1m 12s"
    assert format_duration(3600) == "1h"
    assert format_duration(3 * 3600 + 125) == "3h 2m"
    assert format_duration(7 * 86400) == "7d"
    assert format_duration(-3) == "0s"


def test_escaping_covers_only_slacks_control_characters() -> None:
    assert escape("a & b < c > d *e* _f_") == "a &amp; b &lt; c &gt; d *e* _f_"
