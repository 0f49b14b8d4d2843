"""Helpers for tests that run pixhook as real processes: start, wait for, clean up."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest


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
