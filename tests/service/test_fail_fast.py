"""Fail fast: `pixhook serve`, `web` and `worker` as real processes refuse to start, exit
status 2, with one line per missing or invalid setting, unless in development mode (where
what is missing is a warning and /readyz says 503 until it is set)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.processes import REPO, processes, until  # noqa: F401 - a fixture
from tests.support.servers import free_port

#: Every setting the roles need, unset; the rest valid.
BARE = {"PIXVERSE_API_KEY": "", "PIXVERSE_WEBHOOK_SECRET": "", "PIXHOOK_API_TOKEN": "",
        "PIXHOOK_DEV": "0", "PIXHOOK_HANDLERS": "download", "PIXHOOK_LOG_LEVEL": "warning"}


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    config = tmp_path / "pixhook.toml"
    config.touch()
    return {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "PIXHOOK_CONFIG": str(config),
            "PIXHOOK_DATABASE_URL": f"sqlite:///{tmp_path / 'pixhook.db'}", **BARE, **extra}


def _run(tmp_path: Path, *args: str, **env: str) -> tuple[int, list[str]]:
    done = subprocess.run([sys.executable, "-m", "service", *args], cwd=tmp_path,
                          env=_env(tmp_path, **env), capture_output=True, timeout=60)
    return done.returncode, done.stderr.decode().splitlines()


@pytest.mark.parametrize(("role", "missing"), [
    ("serve", ["PIXVERSE_WEBHOOK_SECRET", "PIXHOOK_API_TOKEN", "PIXVERSE_API_KEY"]),
    ("web", ["PIXVERSE_WEBHOOK_SECRET", "PIXHOOK_API_TOKEN"]),
    ("worker", ["PIXVERSE_API_KEY"]),
])
def test_a_role_refuses_to_start_without_its_settings(
        tmp_path: Path, role: str, missing: list[str]) -> None:
    code, lines = _run(tmp_path, role)
    assert code == 2
    errors = [line for line in lines if line.startswith("error: ")]
    assert [line.split()[1] for line in errors] == missing
    assert lines[-1].startswith(f"pixhook {role} did not start")
    assert not (tmp_path / "pixhook.db").exists()  # refused before touching anything


def test_every_invalid_setting_is_one_line(tmp_path: Path) -> None:
    code, lines = _run(tmp_path, "serve", "--port", "70000", PIXVERSE_API_KEY="k",
                       PIXVERSE_WEBHOOK_SECRET="s", PIXHOOK_API_TOKEN="t",
                       PIXHOOK_HANDLERS="download,nosuchhandler",
                       PIXHOOK_CONFIG=str(tmp_path / "missing.toml"))
    assert code == 2
    assert len(lines) == 4
    assert lines[0] == f"error: PIXHOOK_CONFIG={tmp_path / 'missing.toml'}: no such file"
    assert lines[1].startswith("error: PIXHOOK_HANDLERS names unknown handlers: nosuchhandler "
                               "(installed: ") and "download" in lines[1]
    assert lines[2] == "error: --port=70000: out of range (1-65535)"
    code, lines = _run(tmp_path, "worker", "--health-port", "0", PIXVERSE_API_KEY="k")
    assert (code, lines[0]) == (2, "error: --health-port=0: out of range (1-65535)")
    code, lines = _run(tmp_path, "web", PORT="eighty", PIXVERSE_WEBHOOK_SECRET="s",
                       PIXHOOK_API_TOKEN="t")
    assert (code, lines[0]) == (2, "error: --port='eighty': not a number")


async def test_dev_mode_starts_with_warnings_and_is_not_ready(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:  # noqa: F811
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "service", "serve", "--dev", "--port", str(port)],
        cwd=tmp_path, env=_env(tmp_path), stderr=subprocess.PIPE)
    processes.append(process)

    async def answer() -> httpx.Response | None:
        try:
            async with httpx.AsyncClient(timeout=5) as http:
                return await http.get(f"http://127.0.0.1:{port}/readyz")
        except httpx.TransportError:
            assert process.poll() is None, "pixhook serve --dev exited"
            return None

    response = await until(answer, "pixhook serve --dev", timeout=30)
    assert response.status_code == 503
    assert response.json()["settings"] == \
        "missing PIXVERSE_WEBHOOK_SECRET, PIXHOOK_API_TOKEN, PIXVERSE_API_KEY"
    process.terminate()
    _, stderr = process.communicate(timeout=15)
    warnings = [line for line in stderr.decode().splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 3 and all("(development mode)" in w for w in warnings)
    # PIXHOOK_DEV=1 is the same switch.
    code, _ = _run(tmp_path, "worker", "--health-port", "0", PIXHOOK_DEV="1")
    assert code == 2  # a bad port is refused in development mode too
