"""``pixhook listen`` as a real process against a running service: live lines and ``--json``,
filters, colour only on a terminal and never with NO_COLOR, Ctrl-C exits 130, and a service
that cannot be reached exits 2."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import signal
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.api.support import AUTH, T2V, TOKEN, api_app
from tests.support.processes import REPO
from tests.support.servers import free_port

ANSI = "\x1b["


def _env(url: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PIXHOOK_URL": url,
           "PIXHOOK_API_TOKEN": TOKEN, "PIXHOOK_CONFIG": "/nonexistent/pixhook.toml", **extra}
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


async def _create(http: httpx.AsyncClient, url: str, **fields: Any) -> str:
    created = await http.post(f"{url}/api/jobs", headers=AUTH, json={
        "kind": "text_to_video", "params": T2V, **fields})
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _listen(url: str, *args: str, **env: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "service", "listen", *args, cwd=REPO, env=_env(url, **env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def _lines(process: asyncio.subprocess.Process, count: int) -> list[str]:
    assert process.stdout is not None
    return [(await asyncio.wait_for(process.stdout.readline(), 20)).decode().rstrip("\n")
            for _ in range(count)]


async def _interrupt(process: asyncio.subprocess.Process) -> tuple[int, str]:
    process.send_signal(signal.SIGINT)
    assert process.stderr is not None
    code = await asyncio.wait_for(process.wait(), 20)
    return code, (await process.stderr.read()).decode()


async def test_listen_json_and_lines_then_ctrl_c(tmp_path: Path) -> None:
    async with api_app(f"sqlite:///{tmp_path / 'p.db'}", events_poll_interval=0.05) as url, \
            httpx.AsyncClient(timeout=30) as http:
        old = await _create(http, url, labels={"app": "x"})
        page = (await http.get(f"{url}/api/events", headers=AUTH)).json()
        as_json = await _listen(url, "--json", "--after", "0", "--label", "app=x")
        human = await _listen(url, "--type", "transition", "--after", str(page["last_id"]))
        new = await _create(http, url, labels={"app": "x"})
        await _create(http, url, labels={"app": "y"})
        docs = [json.loads(line) for line in await _lines(as_json, 2)]
        assert [d["subject"] for d in docs] == [old, new]
        assert docs[0]["type"] == "io.pixhook.job.transition"
        shown = await _lines(human, 1)
        assert new in shown[0] and "- -> queued (applied, submit)" in shown[0]
        assert old not in shown[0]
        assert ANSI not in shown[0]  # piped: no colour
        for process in (as_json, human):
            code, err = await _interrupt(process)
            assert code == 130 and "stopped listening" in err


async def test_listen_colours_a_terminal_unless_no_color(tmp_path: Path) -> None:
    async with api_app(f"sqlite:///{tmp_path / 'p.db'}", events_poll_interval=0.05) as url, \
            httpx.AsyncClient(timeout=30) as http:
        await _create(http, url)
        outputs = []
        for extra in ({}, {"NO_COLOR": "1"}):
            leader, follower = pty.openpty()
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "service", "listen", "--after", "0", cwd=REPO,
                env=_env(url, **extra), stdout=follower, stderr=asyncio.subprocess.PIPE)
            os.close(follower)
            text = await asyncio.wait_for(asyncio.to_thread(os.read, leader, 4096), 20)
            outputs.append(text.decode())
            code, _ = await _interrupt(process)
            os.close(leader)
            assert code == 130
        coloured, plain = outputs
        assert "queued" in coloured and ANSI in coloured
        assert "queued" in plain and ANSI not in plain


async def test_listen_without_a_service_exits_2(tmp_path: Path) -> None:
    process = await _listen(f"http://127.0.0.1:{free_port()}")
    code = await asyncio.wait_for(process.wait(), 20)
    assert process.stderr is not None
    assert code == 2 and "cannot reach pixhook" in (await process.stderr.read()).decode()
    async with api_app(f"sqlite:///{tmp_path / 'p.db'}") as url:
        refused = await _listen(url, PIXHOOK_API_TOKEN="wrong")
        assert await asyncio.wait_for(refused.wait(), 20) == 2
