"""The README's "Running the service" block, run as written in a fresh shell (`env -i`):
activate the venv, export the settings, `pixhook serve`; then the CLI in the same shell
reaches the service with the same token."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.processes import REPO
from tests.support.servers import free_port


def _block() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("## Running the service", 1)[1]
    code = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert code is not None
    return code.group(1).splitlines()


def test_running_the_service_works_as_written(tmp_path: Path) -> None:
    lines = _block()
    assert lines[0].startswith("./scripts/install && . .venv/bin/activate")
    assert lines[-1].startswith("pixhook serve --port 8000")
    port = free_port()
    # The install step is what ./scripts/test already did; the rest runs as written, with
    # the placeholders filled in and the port swapped for a free one.
    script = "\n".join([
        ". .venv/bin/activate",
        lines[1].replace("...", "placeholder"),
        f"{lines[2].split('#')[0].replace('8000', str(port))} &",
        "server=$!",
        "for i in $(seq 100); do pixhook jobs >/dev/null 2>&1 && break; sleep 0.2; done",
        "pixhook jobs; status=$?",
        "kill $server; wait $server",
        "exit $status"])
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
           # Where this run keeps its state (not the checkout), and where the CLI finds it.
           "PIXHOOK_DATABASE_URL": f"sqlite:///{tmp_path / 'pixhook.db'}",
           "PIXHOOK_CONFIG": str(tmp_path / "pixhook.toml"),
           "PIXHOOK_URL": f"http://127.0.0.1:{port}", "PIXHOOK_LOG_LEVEL": "warning"}
    (tmp_path / "pixhook.toml").touch()
    done = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True,
                          timeout=90)
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "no jobs"
