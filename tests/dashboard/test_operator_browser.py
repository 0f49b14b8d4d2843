"""The operator's pages in headless Chromium, at 1280 px and at 375 px: login, search, the
dead letters and bulk retry, replay, the workers view, the empty state's command; every page
saved as a screenshot at both widths (``tmp_path``, and ``artifacts/`` at the repository root).

Needs Debian's ``chromium`` and the ``playwright`` package (see test_browser.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import shlex
import shutil
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner

from service.cli import cli
from service.dashboard.templating import EMPTY_STATE_COMMAND
from service.handler_api import BaseHandler, HandlerContext, Job, PermanentError, Transition
from service.lifecycle import JobState
from service.registry import HandlerSet
from tests.dashboard.conftest import API_TOKEN, Stack, dashboard_service
from tests.dashboard.test_browser import ARTIFACTS, CHROMIUM

playwright_api = pytest.importorskip(
    "playwright.async_api", reason="playwright is not installed (pip install playwright)")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)")

WIDTHS = (1280, 375)


class NotifyHandler(BaseHandler):
    """Counts its runs per job; fails for good while ``failing``."""

    name = "notify"
    events = frozenset({JobState.SUCCEEDED})
    failing: ClassVar[bool] = False
    runs: ClassVar[list[str]] = []

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        if type(self).failing:
            raise PermanentError("the chat server said no")
        type(self).runs.append(job.id)


async def _fits(page: Any, selector: str | None = None) -> None:
    """Nothing overflows the window sideways, and ``selector`` (a button) is on screen."""
    width = await page.evaluate("window.innerWidth")
    overflow = await page.evaluate("document.documentElement.scrollWidth")
    assert overflow <= width, f"{page.url}: {overflow} px wide in a {width} px window"
    if selector is not None:
        box = await (await page.wait_for_selector(selector)).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, box


async def test_operator_pages_and_actions_in_the_browser(stack: Stack, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    settings = dataclasses.replace(stack.settings, handlers=("notify",))
    handler_set = HandlerSet.from_settings(settings, available={"notify": NotifyHandler})
    NotifyHandler.failing, NotifyHandler.runs = True, []
    problems: list[str] = []
    shots: list[str] = []
    async with dashboard_service(stack, handler_set, handlers=("notify",)) as browser, \
            playwright_api.async_playwright() as playwright:
        base = str(browser.client.base_url).rstrip("/")
        chromium = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            context = await chromium.new_context(viewport={"width": 1280, "height": 900})
            page = await context.new_page()
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.on("response", lambda response: problems.append(
                f"{response.status} {response.url}") if response.status >= 400 else None)

            async def shoot(name: str, selector: str | None = None) -> None:
                for width in WIDTHS:
                    await page.set_viewport_size({"width": width, "height": 900})
                    await _fits(page, selector if width == 375 else None)
                    await page.screenshot(path=str(tmp_path / f"{name}-{width}.png"),
                                          full_page=True)
                    shots.append(f"{name}-{width}.png")
                await page.set_viewport_size({"width": 1280, "height": 900})

            # Login, then the empty list, whose suggested command really submits a job.
            await page.goto(f"{base}/")
            await page.fill("#token", API_TOKEN)
            await page.click("button[type=submit]")
            await page.wait_for_url(f"{base}/")
            assert await page.inner_text("#empty-command") == EMPTY_STATE_COMMAND
            await shoot("jobs-empty")
            monkeypatch.setenv("PIXHOOK_URL", base)
            monkeypatch.setenv("PIXHOOK_API_TOKEN", API_TOKEN)
            # In a thread: the CLI blocks, and the service runs on this event loop.
            ran = await asyncio.to_thread(CliRunner().invoke, cli,
                                          shlex.split(EMPTY_STATE_COMMAND)[1:])
            assert ran.exit_code == 0, ran.output
            first = {"id": ran.output.strip().splitlines()[-1]}

            # Two more jobs; every notify task dies, and the list marks those jobs.
            second = await stack.submit(labels={"team": "ops"},
                                        params={**_t2v(), "prompt": "a heron at dawn"})
            third = await stack.submit()
            jobs = [first, second, third]
            for job in jobs:
                await stack.wait_for(job["id"], "succeeded")
                await stack.wait_for_tasks(job["id"], "dead")
            await page.goto(f"{base}/")
            for job in jobs:
                mark = await page.inner_text(f"#job-{job['id']} .handler-failed")
                assert "notify failed" in mark
            await shoot("jobs")

            # Search: by prompt, by label, by job id.
            await page.fill("input[name=q]", "HERON")
            await page.press("input[name=q]", "Enter")
            await page.wait_for_url(f"{base}/?q=HERON")
            assert await page.locator("#jobs-body tr").count() == 1
            assert await page.is_visible(f"#job-{second['id']}")
            await shoot("search")
            for term in ("team=ops", second["id"]):
                await page.goto(f"{base}/?q={term}")
                assert await page.locator("#jobs-body tr").count() == 1
            await page.goto(f"{base}/?q=no+such+thing")
            assert "No job matches" in await page.inner_text("#jobs-empty")

            # The dead letters: counts, then a bulk retry of two of the three.
            await page.click("text=Tasks")
            await page.click("a.chip:has-text('dead letters')")
            await page.wait_for_url(f"{base}/tasks?state=dead")
            assert "3" in await page.inner_text("a.chip-on .count")
            await shoot("dead-letters", "#retry-selected")
            NotifyHandler.failing = False
            dead = await stack.tasks(state="dead")
            for task in dead[:2]:
                await page.check(f"#task-{task['id']} input[type=checkbox]")
            await page.click("#retry-selected")
            await page.wait_for_url(f"{base}/tasks?state=dead")
            assert "2 dead tasks will run again now." in await page.inner_text(".flash")
            for task in dead[:2]:
                await stack.wait_for_tasks(task["job_id"], "succeeded")
            assert sorted(NotifyHandler.runs) == sorted(t["job_id"] for t in dead[:2])
            await page.goto(f"{base}/tasks?state=dead")
            assert await page.locator("tbody tr").count() == 1
            await page.click("#retry-all")
            assert "1 dead task will run again now." in await page.inner_text(".flash")
            await stack.wait_for_tasks(dead[2]["job_id"], "succeeded")

            # Replay from the job page: the handler runs again, once, and the history shows
            # every run, numbered on from the ones before; the confirmation is in view.
            task = dead[0]
            await page.goto(f"{base}/jobs/{task['job_id']}")
            await shoot("job", f"#task-{task['id']} button")
            before = NotifyHandler.runs.count(task["job_id"])
            await page.click(f"#task-{task['id']} button:has-text('Replay')")
            await page.wait_for_url(f"{base}/jobs/{task['job_id']}#task-{task['id']}")
            # The task's run reloads the live page; the confirmation stays (dashboard.js).
            await stack.wait_for_tasks(task["job_id"], "succeeded")
            await page.wait_for_load_state()
            await page.locator(".flash").wait_for(state="visible", timeout=5000)
            flash_box = await page.locator(".flash").bounding_box()
            assert flash_box is not None and 0 <= flash_box["y"] < 900  # on screen
            await stack.wait_for_tasks(task["job_id"], "succeeded")
            assert NotifyHandler.runs.count(task["job_id"]) == before + 1
            await page.goto(f"{base}/jobs/{task['job_id']}")
            runs = await page.inner_text(f"#task-{task['id']} .runs")
            assert "run #1" in runs and "run #2" in runs and "run #3" in runs, runs
            assert "Event log" in await page.inner_text("#events")
            assert "verified" in await page.inner_text("#events")

            # The workers view and the whole tasks list.
            await page.goto(f"{base}/workers")
            await shoot("workers")
            await page.goto(f"{base}/tasks")
            await shoot("tasks")
        finally:
            await chromium.close()

    assert problems == []
    ARTIFACTS.mkdir(exist_ok=True)
    for name in shots:
        assert (tmp_path / name).stat().st_size > 5_000
        shutil.copyfile(tmp_path / name, ARTIFACTS / name)


def _t2v() -> dict[str, Any]:
    from tests.dashboard.conftest import T2V
    return dict(T2V)
