"""The dashboard in headless Chromium: log in, watch a job reach ``succeeded`` live, play it.

Needs Debian's ``chromium`` (``apt-get install chromium``) and the ``playwright`` package
(pointed at that binary; ``playwright install`` is never needed). Without either, it skips.
Screenshots land under ``tmp_path`` and in ``artifacts/`` at the repository root.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard.conftest import Stack, dashboard_service

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")


async def test_a_job_reaches_succeeded_live_in_the_browser(stack: Stack, tmp_path: Path) -> None:
    stack.sim.generation_seconds = 1.5  # long enough for the page to show `generating` first
    problems: list[str] = []
    async with dashboard_service(stack) as browser_client, \
            playwright_api.async_playwright() as playwright:
        base = str(browser_client.client.base_url).rstrip("/")
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = await chromium.new_page(viewport={"width": 1280, "height": 800})

            def console(message: Any) -> None:
                if message.type == "error":
                    problems.append(message.text)

            page.on("console", console)
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("response", lambda response: problems.append(
                f"{response.status} {response.url}") if response.status >= 400 else None)

            # Not logged in: the dashboard sends us to the login form, and back after it.
            await page.goto(f"{base}/")
            assert "/login" in page.url
            await page.fill("#token", "test-api-token")
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/")
            assert "No jobs yet" in await page.inner_text("#jobs-empty")
            await page.wait_for_function(
                "document.getElementById('live-status').textContent === 'live'")
            await page.evaluate("window.notReloaded = true")

            job = await stack.submit()
            row = f"#job-{job['id']}"
            await page.wait_for_selector(f"{row}[data-state=generating]", timeout=10_000)
            await page.wait_for_selector(f"{row}[data-state=succeeded]", timeout=15_000)
            badge = await page.inner_text(f"{row} .badge")
            assert badge == "succeeded"
            assert await page.evaluate("window.notReloaded === true")  # live, not reloaded
            assert await page.is_hidden("#jobs-empty")
            await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

            # The job page: timeline, tasks, and the downloaded video playing from /media.
            await page.click(f"{row} a")
            await page.wait_for_url(f"{base}/jobs/{job['id']}")
            video = await page.wait_for_selector("video", timeout=15_000)  # reloads when ready
            assert video is not None
            src = await video.get_attribute("src")
            assert src is not None and src.startswith("/media/")
            await page.wait_for_function(
                "document.querySelector('video').readyState >= 1", timeout=10_000)
            assert await page.evaluate("document.querySelector('video').duration") > 0
            timeline = await page.inner_text(".timeline")
            for state in ("queued", "submitting", "generating", "succeeded"):
                assert state in timeline
            await page.screenshot(path=str(tmp_path / "dashboard-job.png"), full_page=True)
        finally:
            await chromium.close()

    assert problems == []
    ARTIFACTS.mkdir(exist_ok=True)
    for name in ("dashboard.png", "dashboard-job.png"):
        assert (tmp_path / name).stat().st_size > 10_000
        shutil.copyfile(tmp_path / name, ARTIFACTS / name)
