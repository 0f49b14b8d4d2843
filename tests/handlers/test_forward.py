"""The forward handler: signed Standard Webhooks events to a real receiver on loopback.

Every delivery goes over HTTP to a Starlette app under uvicorn, and signatures are checked with
the ``standardwebhooks`` package, not with the handler's own code.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from handlers.forward import (
    DeliveryError,
    ForwardHandler,
    message_id,
    safe_url,
)
from service.handler_api import HandlerContext, PermanentError, Retry, retry_after_seconds
from service.lifecycle import JobState
from service.settings import Settings
from tests.handlers.conftest import Harness
from tests.support.servers import free_port, running_server

#: The example secret of the Standard Webhooks spec.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET_KEY_PART = SECRET.removeprefix("whsec_")
OTHER_SECRET = "whsec_" + base64.b64encode(b"another key, another receiver").decode()
DONE = {"url": "https://media.pixverse.ai/v/lantern.mp4", "size": 2_345_678, "credits": 35,
        "has_audio": True}


@dataclasses.dataclass
class Received:
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclasses.dataclass
class Receiver:
    """A webhook endpoint that records every request and answers from a script."""

    url: str = ""
    requests: list[Received] = dataclasses.field(default_factory=list)
    #: Answers to give in order (status, headers, body); 204 once they run out.
    answers: list[tuple[int, dict[str, str], str]] = dataclasses.field(default_factory=list)

    def answer(self, status: int, headers: dict[str, str] | None = None,
               body: str = "") -> None:
        self.answers.append((status, headers or {}, body))

    async def endpoint(self, request: Request) -> Response:
        self.requests.append(Received(request.url.path, request.url.query,
                                      dict(request.headers), await request.body()))
        status, headers, body = self.answers.pop(0) if self.answers else (204, {}, "")
        return Response(body or None, status_code=status, headers=headers)

    @property
    def hook(self) -> str:
        return f"{self.url}/hook"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    recorder = Receiver()
    app = Starlette(routes=[Route("/hook", recorder.endpoint, methods=["POST"]),
                            Route("/moved", recorder.endpoint, methods=["POST"])])
    async with running_server(app) as url:
        recorder.url = url
        yield recorder


def _settings(harness: Harness, secret: str = SECRET) -> Settings:
    # The receivers here live on loopback (test_forward_guard.py tests the guard itself).
    return dataclasses.replace(harness.settings, forward_secret=secret,
                               forward_allow_private=True)


def _handler(harness: Harness) -> ForwardHandler:
    return ForwardHandler(_settings(harness), {})


def _context(harness: Harness, task: Any, secret: str = SECRET) -> HandlerContext:
    return harness.context(task, settings=_settings(harness, secret))


async def _forward(harness: Harness, receiver: Receiver, state: JobState = JobState.SUCCEEDED,
                   **job_fields: Any) -> tuple[Any, Any, Any]:
    """Run the handler once for a job moved to ``state``; returns (job, transition, task)."""
    job_fields.setdefault("callback_url", receiver.hook)
    job, transition, task = await harness.transition("forward", state, payload=DONE,
                                                     **job_fields)
    await _handler(harness).run(job, transition, _context(harness, task))
    return job, transition, task


async def test_the_event_verifies_with_the_secret_and_not_with_another(
        harness: Harness, receiver: Receiver) -> None:
    await _forward(harness, receiver)
    [request] = receiver.requests
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == "pixhook"
    assert request.headers["webhook-timestamp"].isdigit()
    assert Webhook(SECRET).verify(request.body, request.headers)["type"] == "job.succeeded"
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER_SECRET).verify(request.body, request.headers)
    tampered = request.body.replace(b"job.succeeded", b"job.failed")
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(tampered, request.headers)


async def test_the_body_describes_the_job_and_its_result(harness: Harness,
                                                         receiver: Receiver) -> None:
    job, transition, _ = await _forward(harness, receiver, labels={"team": "a"})
    [request] = receiver.requests
    assert b" " not in request.body.replace(b"a lantern over a lake", b"")  # compact JSON
    event = json.loads(request.body)
    assert event["type"] == "job.succeeded"
    assert event["timestamp"] == datetime.fromtimestamp(
        transition.received_at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    data = event["data"]
    assert data["id"] == job.id and data["kind"] == "text_to_video"
    assert data["state"] == "succeeded" and data["labels"] == {"team": "a"}
    assert data["video_id"] == job.video_id and data["video_id_str"] == str(job.video_id)
    assert data["params"]["prompt"] == "a lantern over a lake"
    assert data["result"] == {"url": DONE["url"], "size": DONE["size"], "credits": 35,
                              "has_audio": True}
    assert data["transition"] == {"from_state": "generating", "to_state": "succeeded",
                                  "source": "webhook", "received_at": transition.received_at}
    assert "callback_url" not in data and "trace_id" not in data


async def test_internal_fields_never_leave(harness: Harness, receiver: Receiver) -> None:
    job, transition, task = await harness.transition("forward", payload=DONE,
                                                     callback_url=receiver.hook)
    job = await harness.store.update_job(job.id, media_path="/srv/pixhook/media/secret.mp4")
    await _handler(harness).run(job, transition, _context(harness, task))
    [request] = receiver.requests
    assert b"media" not in request.body.replace(b"media.pixverse.ai", b"")
    assert SECRET_KEY_PART.encode() not in request.body


async def test_each_failure_state_is_its_own_event_type(harness: Harness,
                                                        receiver: Receiver) -> None:
    await _forward(harness, receiver, JobState.MODERATION_FAILED)
    event = Webhook(SECRET).verify(receiver.requests[0].body, receiver.requests[0].headers)
    assert event["type"] == "job.moderation_failed"
    assert event["data"]["transition"]["to_state"] == "moderation_failed"


async def test_the_webhook_id_is_stable_across_retries_and_distinct_across_tasks(
        harness: Harness, receiver: Receiver) -> None:
    receiver.answer(500)  # the first run fails, so the worker would run the task again
    job, transition, task = await harness.transition("forward", payload=DONE,
                                                     callback_url=receiver.hook)
    handler = _handler(harness)
    with pytest.raises(DeliveryError):
        await handler.run(job, transition, _context(harness, task))
    retried = dataclasses.replace(task, attempts=task.attempts + 1)
    await handler.run(job, transition, _context(harness, retried))
    await _forward(harness, receiver)  # another job: another task

    first, second, other = (r.headers["webhook-id"] for r in receiver.requests)
    assert first == second == message_id(task.idempotency_key)
    assert other != first
    assert first.startswith("msg_") and first[4:].isalnum()


def test_message_ids_differ_per_key() -> None:
    ids = {message_id(f"job_{n}:{state}:forward") for n in range(20)
           for state in ("generating", "succeeded")}
    assert len(ids) == 40


async def test_410_gone_stops_for_good(harness: Harness, receiver: Receiver) -> None:
    receiver.answer(410)
    with pytest.raises(PermanentError, match="410"):
        await _forward(harness, receiver)


async def test_500_is_retried_with_backoff(harness: Harness, receiver: Receiver) -> None:
    receiver.answer(500, body="database is down")
    with pytest.raises(DeliveryError, match=r"^HTTP 500 from http://127\.0\.0\.1:\d+/hook: "
                                            r"database is down$") as caught:
        await _forward(harness, receiver)
    assert not isinstance(caught.value, Retry | PermanentError)


async def test_the_error_quotes_only_a_short_printable_excerpt(harness: Harness,
                                                               receiver: Receiver) -> None:
    # What /api/tasks and the dashboard show as the run's error: a terminal escape, forged log
    # lines, a bidirectional override and a page of text must not come through.
    body = ("\x1b[31mdenied\x1b[0m\r\nFAKE 200 delivered\r\n\u202eevil\x00"
            + "lorem ipsum " * 100 + "SECRET-TAIL")
    receiver.answer(502, body=body)
    with pytest.raises(DeliveryError) as caught:
        await _forward(harness, receiver)
    message = str(caught.value)
    prefix = f"HTTP 502 from {receiver.hook}: "
    assert message.startswith(prefix)
    quoted = message.removeprefix(prefix)
    assert quoted.startswith("[31mdenied [0m FAKE 200 delivered evil lorem ipsum")
    assert len(quoted) <= 80 and quoted.endswith("…")
    assert message.isprintable() and "SECRET-TAIL" not in message


async def test_429_without_retry_after_is_retried_with_backoff(harness: Harness,
                                                               receiver: Receiver) -> None:
    receiver.answer(429)
    with pytest.raises(DeliveryError, match="HTTP 429"):
        await _forward(harness, receiver)


async def test_429_with_retry_after_waits_as_told(harness: Harness, receiver: Receiver) -> None:
    receiver.answer(429, {"retry-after": "7"})
    with pytest.raises(Retry) as caught:
        await _forward(harness, receiver)
    assert caught.value.after == 7


async def test_503_retry_after_is_capped_at_the_longest_backoff(harness: Harness,
                                                                receiver: Receiver) -> None:
    receiver.answer(503, {"retry-after": "86400"})
    with pytest.raises(Retry) as caught:
        await _forward(harness, receiver)
    assert caught.value.after == harness.settings.task_backoff_max


def test_retry_after_reads_seconds_and_dates() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    date = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert retry_after_seconds(date, now.timestamp()) == 90
    assert retry_after_seconds("12", now.timestamp()) == 12
    assert retry_after_seconds("-3", now.timestamp()) == 0
    assert retry_after_seconds("soon", now.timestamp()) is None
    assert retry_after_seconds(None, now.timestamp()) is None


async def test_a_redirect_is_a_failure_and_not_followed(harness: Harness,
                                                        receiver: Receiver) -> None:
    receiver.answer(307, {"location": "/moved?token=abc"})
    with pytest.raises(DeliveryError, match="redirect to .*/moved; redirects are not") as caught:
        await _forward(harness, receiver)
    assert "token" not in str(caught.value)
    assert [r.path for r in receiver.requests] == ["/hook"]


async def test_an_unreachable_receiver_is_retried_with_backoff(harness: Harness) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook?token=abc"
    job, transition, task = await harness.transition("forward", payload=DONE, callback_url=url)
    with pytest.raises(DeliveryError, match="ConnectError") as caught:
        await _handler(harness).run(job, transition, _context(harness, task))
    assert "token" not in str(caught.value) and caught.value.__cause__ is None


async def test_no_secret_is_a_visible_permanent_error(harness: Harness,
                                                      receiver: Receiver) -> None:
    job, transition, task = await harness.transition("forward", callback_url=receiver.hook)
    with pytest.raises(PermanentError, match="PIXHOOK_FORWARD_SECRET is not set"):
        await _handler(harness).run(job, transition, harness.context(task))
    assert receiver.requests == []


async def test_a_secret_that_is_not_base64_is_permanent(harness: Harness,
                                                        receiver: Receiver) -> None:
    job, transition, task = await harness.transition("forward", callback_url=receiver.hook)
    with pytest.raises(PermanentError, match="not whsec_ followed by base64") as caught:
        await _handler(harness).run(job, transition,
                                    _context(harness, task, secret="whsec_not*base64!"))
    assert "not*base64" not in str(caught.value)
    assert receiver.requests == []


async def test_jobs_without_a_callback_url_need_no_task(harness: Harness) -> None:
    job, transition, _ = await harness.transition("forward")
    handler = _handler(harness)
    assert not handler.wants(job, transition)
    assert handler.wants(dataclasses.replace(job, callback_url="https://example.com/h"),
                         transition)


def test_it_runs_on_what_a_receiver_cares_about() -> None:
    assert ForwardHandler.name == "forward"
    assert ForwardHandler.events == {
        JobState.GENERATING, JobState.SUCCEEDED, JobState.FAILED, JobState.MODERATION_FAILED,
        JobState.REJECTED, JobState.DELETED}


async def test_secrets_and_url_tokens_stay_out_of_the_logs(
        harness: Harness, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver.answer(500)
    hook = f"{receiver.hook}?token=receiver-token"
    with pytest.raises(DeliveryError) as caught:
        await _forward(harness, receiver, callback_url=hook)
    await _forward(harness, receiver, callback_url=hook)

    assert receiver.requests[-1].query == "token=receiver-token"  # the full URL was used
    messages = [record.getMessage() for record in caplog.records]
    assert any("forwarded job.succeeded" in message for message in messages)
    for text in [*messages, str(caught.value)]:
        assert SECRET_KEY_PART not in text
        assert "whsec_" not in text
    ours = [m for r, m in zip(caplog.records, messages, strict=True)
            if r.name.startswith("tests.handlers")]
    assert ours and not any("receiver-token" in message for message in ours)


def test_safe_url_drops_credentials_query_and_fragment() -> None:
    assert (safe_url("https://user:pw@Example.com:8443/in/hook?token=x#frag")
            == "https://example.com:8443/in/hook")
    # A receiver's Location header can say anything: it is never a crash.
    assert safe_url("http://hooks.example.com:99999/x?token=y") == "(an unreadable URL)"
    assert safe_url("http://[::1/x") == "(an unreadable URL)"

