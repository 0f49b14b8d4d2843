"""Logs: one line per event, JSON when asked, and no secret ever written."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from service.logs import configure_logging
from service.settings import Settings
from tests.service.conftest import Stack

API_KEY = "sk-live-0123456789abcdef"
SLACK_URL = "https://hooks.slack.com/services/T000AAAA/B000BBBB/abcdefghijklmnop"
SECRET_SETTINGS = Settings(pixverse_api_key=API_KEY, slack_webhook_url=SLACK_URL,
                           pixverse_webhook_secret="whs-\"quoted\"-secret",
                           api_token="api-token-123456",
                           handler_options={"render_farm": {"api_token": "farm-token-987"}})

Configure = Callable[..., io.StringIO]


@pytest.fixture
def configure() -> Iterator[Configure]:
    """Install pixhook's log handler for one test, writing to a buffer; undo it after."""
    root = logging.getLogger()
    level = root.level
    installed: list[logging.Handler] = []

    def install(settings: Settings, **options: Any) -> io.StringIO:
        stream = io.StringIO()
        installed.append(configure_logging(settings, stream=stream, **options))
        return stream

    yield install
    for handler in installed:
        root.removeHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_the_job_id(configure: Configure) -> None:
    stream = configure(SECRET_SETTINGS, json_format=True)
    log = logging.getLogger("service.test")
    log.info("job %s queued", "job_1", extra={"action": "submit", "job_id": "job_1"})
    log.debug("not at info")
    logging.getLogger("httpx").info("GET %s", SLACK_URL)  # httpx is kept to warnings
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        log.exception("task failed", extra={"action": "task", "job_id": "job_2", "task_id": 7})
    records = [json.loads(line) for line in lines(stream)]
    assert len(records) == 2
    first, second = records
    assert first["msg"] == "job job_1 queued" and first["job_id"] == "job_1"
    assert first["action"] == "submit" and first["level"] == "info"
    assert first["logger"] == "service.test" and first["ts"].endswith("Z")
    assert second["task_id"] == 7 and "RuntimeError: boom" in second["exc"]


def test_text_lines_name_the_job(configure: Configure) -> None:
    stream = configure(Settings(log_level="warning"))
    log = logging.getLogger("service.test")
    log.info("quiet")
    log.warning("job %s failed", "job_3", extra={"action": "submit", "job_id": "job_3"})
    [line] = lines(stream)
    assert "WARNING service.test: job job_3 failed" in line
    assert line.endswith("[action=submit job_id=job_3]")


@pytest.mark.parametrize("json_format", [False, True])
def test_secrets_logged_by_mistake_are_masked(configure: Configure, json_format: bool) -> None:
    stream = configure(SECRET_SETTINGS, json_format=json_format)
    log = logging.getLogger("service.test")
    log.warning("calling with key %s", API_KEY)
    log.warning("posting", extra={"url": SLACK_URL, "job_id": "job_4"})
    log.warning("path only: %s", "/services/T000AAAA/B000BBBB/abcdefghijklmnop")
    log.warning("secrets %s %s %s", SECRET_SETTINGS.pixverse_webhook_secret, "api-token-123456",
                "farm-token-987")
    try:
        raise ValueError(f"bad token {SECRET_SETTINGS.api_token}")
    except ValueError:
        log.exception("failed")
    text = stream.getvalue()
    for secret in (API_KEY, SLACK_URL, "abcdefghijklmnop", "api-token-123456", "quoted",
                   "farm-token-987"):
        assert secret not in text, secret
    for name in ("PIXVERSE_API_KEY", "PIXHOOK_SLACK_WEBHOOK_URL", "PIXVERSE_WEBHOOK_SECRET",
                 "PIXHOOK_API_TOKEN", "handler.render_farm.api_token"):
        assert f"[masked {name}]" in text, name
    if json_format:
        assert all(json.loads(line) for line in lines(stream))


async def test_a_real_run_logs_json_without_secrets(stack: Stack, configure: Configure) -> None:
    stream = configure(stack.settings, json_format=True)
    async with stack.service():
        job = await stack.submit()
        await stack.wait_for(job["id"], "succeeded")
        await stack.wait_for_tasks(job["id"], "succeeded")
    records = [json.loads(line) for line in lines(stream)]
    mine = [r for r in records if r.get("job_id") == job["id"]]
    assert {r["action"] for r in mine} >= {"submit", "webhook", "task"}
    text = stream.getvalue()
    for secret in (stack.settings.pixverse_api_key, stack.settings.pixverse_webhook_secret,
                   stack.settings.api_token, stack.settings.secret_key):
        assert secret not in text
