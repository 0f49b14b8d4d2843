"""Helpers for tests that run pixhook as real processes: start, wait for, clean up."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.simulator.config import DEFAULT_API_KEY
from tests.service.conftest import API_TOKEN

REPO = Path(__file__).resolve().parents[2]


def pixhook_env(*, database_url: str, sim_url: str, webhook_secret: str, tmp_path: Path,
                **extra: str) -> dict[str, str]:
    """The environment of a pixhook process run from this checkout against a simulator at
    ``sim_url`` (its default account), with media under ``tmp_path``; ``extra`` adds to it.
    Its config file is an empty one in ``tmp_path`` (the checkout's own pixhook.toml, if any,
    is not read; a missing one would refuse to start)."""
    config = tmp_path / "empty-pixhook.toml"
    config.touch()
    return {
        **os.environ, "PYTHONPATH": str(REPO),
        "PIXHOOK_DATABASE_URL": database_url,
        "PIXVERSE_BASE_URL": f"{sim_url}/openapi/v2",
        "PIXVERSE_API_KEY": DEFAULT_API_KEY,
        "PIXVERSE_WEBHOOK_SECRET": webhook_secret,
        "PIXHOOK_API_TOKEN": API_TOKEN, "PIXHOOK_MEDIA_DIR": str(tmp_path / "media"),
        "PIXHOOK_CONFIG": str(config),
        "PIXHOOK_DOWNLOAD_ALLOW_PRIVATE": "1",
        "PIXHOOK_FORWARD_ALLOW_PRIVATE": "1",  # callback receivers, if any, on loopback
        **extra,
    }


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """A list the test appends its processes to; at the end, those still running get SIGTERM
    (a graceful stop), and SIGKILL if they are still there 15 s later."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in started:
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


async def until(check: Callable[[], Awaitable[Any]], what: str, *, timeout: float = 30.0,
                interval: float = 0.05) -> Any:
    """Await ``check()`` every ``interval`` seconds until it returns something truthy, and
    return that; fail with "timed out waiting for WHAT" after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(interval)
