"""Alerts over real processes: `pixhook serve` with the wrong webhook secret, the simulator
in compressed time, a Slack stand-in. Within a minute: a WARNING naming the video id, the
"signature failures" alert in Slack, on /metrics and as a dashboard banner, and "webhooks
not arriving" once the reconciler has healed the job; one message per cause however long it
lasts; "recovered" once the secret is right again."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.simulator import SimulatorConfig
from service.simulator import create_app as create_simulator
from service.simulator.config import DEFAULT_API_KEY
from service.slack_receiver import SlackReceiver
from tests.service.conftest import API_TOKEN, T2V
from tests.support.processes import pixhook_env, processes, until  # noqa: F401 - a fixture
from tests.support.servers import free_port, running_server

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def test_a_wrong_secret_raises_the_alert_within_a_minute(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:  # noqa: F811
    sim = SimulatorConfig(generation_seconds=0.3, time_compression=0.01)
    slack = SlackReceiver()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "pixhook.log"
    async with running_server(create_simulator(sim)) as sim_url, \
            running_server(slack.app) as slack_url, \
            httpx.AsyncClient(timeout=10, base_url=base) as http:
        env = pixhook_env(database_url=f"sqlite:///{tmp_path / 'pixhook.db'}", sim_url=sim_url,
                          tmp_path=tmp_path, webhook_secret="not-the-secret-pixverse-uses",
                          PIXHOOK_HANDLERS="", PIXHOOK_WEBHOOK_GRACE="2",
                          PIXHOOK_RECONCILE_INTERVAL="0.5", PIXHOOK_ALERT_CHECK_INTERVAL="0.5",
                          PIXHOOK_ALERT_CLEAR_AFTER="3",
                          PIXHOOK_ALERT_SLACK_URL=f"{slack_url}/services/T/B/alerts")
        with log.open("wb") as out:
            processes.append(subprocess.Popen(
                [sys.executable, "-m", "service", "serve", "--port", str(port)],
                cwd=tmp_path, env=env, stderr=out))
        sim.accounts[DEFAULT_API_KEY].webhook_url = f"{base}/webhooks/pixverse"

        async def up() -> bool:
            try:
                return (await http.get("/healthz")).status_code == 200
            except httpx.TransportError:
                return False
        await until(up, "pixhook serve")
        started = time.monotonic()
        auth = {"Authorization": f"Bearer {API_TOKEN}"}
        created = await http.post("/api/jobs", headers=auth,
                                  json={"kind": "text_to_video", "params": T2V})
        assert created.status_code == 201
        job_id = created.json()["id"]

        def texts() -> list[str]:
            return [message["text"] for message in slack.received]

        async def alerted() -> bool:
            return any("Webhook signatures fail" in text for text in texts()) and \
                any("Webhooks are not arriving" in text for text in texts())
        await until(alerted, "both alerts in Slack", timeout=60, interval=0.1)
        assert time.monotonic() - started < 60
        job = (await http.get(f"/api/jobs/{job_id}", headers=auth)).json()
        assert job["state"] == "succeeded"  # healed by polling, as the alert says
        video_id = job["video_id_str"]
        # The WARNING line names the video id and the likely cause.
        assert re.search(rf"WARNING .*bad_signature \(claims video id {video_id}\): "
                         r"PIXVERSE_WEBHOOK_SECRET is probably wrong", log.read_text())
        assert "WARNING service.alerts: ALERT Webhook signatures fail" in log.read_text()
        metrics = (await http.get("/metrics")).text
        assert 'pixhook_alert_active{cause="signature_failures"} 1' in metrics
        assert 'pixhook_alert_active{cause="webhooks_not_arriving"} 1' in metrics
        assert 'pixhook_alert_active{cause="dead_tasks"} 0' in metrics
        # The dashboard shows it on every page, once logged in.
        form = await http.get("/login")
        match = CSRF.search(form.text)
        assert match
        await http.post("/login", data={"token": API_TOKEN, "next": "/",
                                        "csrf": match.group(1)})
        page = await http.get("/tasks")
        assert 'class="alert-banner"' in page.text and "Webhook signatures fail" in page.text

        # PixVerse keeps retrying with the wrong secret: still one message per cause.
        before = len(texts())
        await asyncio.sleep(1.5)  # three more checks
        assert len(texts()) == before
        assert sum("Webhook signatures fail" in text for text in texts()) == 1

        # The secret is right again: once no failure is seen for the clear window, recovered.
        sim.accounts[DEFAULT_API_KEY].webhook_secret = "not-the-secret-pixverse-uses"

        async def recovered() -> bool:
            return any("recovered: Webhook signatures fail" in text for text in texts())
        await until(recovered, "the recovered message", timeout=30, interval=0.1)
        metrics = (await http.get("/metrics")).text
        assert 'pixhook_alert_active{cause="signature_failures"} 0' in metrics

