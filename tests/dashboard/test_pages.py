"""The dashboard over HTTP, as a browser without JavaScript sees it: login, pages, retry."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import time
from typing import Any, ClassVar

import pytest

from service.dashboard.auth import SESSION_COOKIE, safe_next
from service.handler_api import (
    BaseHandler,
    HandlerContext,
    Job,
    JobState,
    PermanentError,
    Transition,
)
from service.registry import HandlerSet
from tests.dashboard.conftest import API_TOKEN, Browser, Stack, dashboard_service

SECRET_PROMPT_MARKER = "a lantern over a lake"


async def test_everything_but_the_login_page_needs_a_login(stack: Stack) -> None:
    async with dashboard_service(stack, run_background=False) as browser:
        client = browser.client
        for path in ("/", "/?state=failed", "/jobs/job_x"):
            response = await client.get(path)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/login?next=")
        retry = await client.post("/tasks/1/retry", data={"csrf": "x"})
        assert retry.status_code == 303 and retry.headers["location"].startswith("/login")
        assert (await client.get("/events")).status_code == 401  # EventSource: no redirect
        login = await client.get("/login", params={"next": "/jobs/job_x"})
        assert login.status_code == 200 and 'value="/jobs/job_x"' in login.text
        assert login.headers["content-security-policy"].startswith("default-src 'self'")
        # The other routes keep their own rules: no session, no redirect.
        api = await client.get("/api/jobs")
        assert api.status_code == 401 and api.json()["error"]
        assert (await client.get("/healthz")).text == "ok"
        assert (await client.get("/media/not-a-token")).status_code == 404
        hook = await client.post("/webhooks/pixverse", json={})
        assert hook.status_code in (400, 401)
        assert (await client.get("/static/dashboard/dashboard.css")).status_code == 200


async def test_wrong_token_is_refused_and_the_right_one_logs_in(stack: Stack) -> None:
    async with dashboard_service(stack, run_background=False) as browser:
        wrong = await browser.login("not-the-token")
        assert wrong.status_code == 401 and "not the API token" in wrong.text
        assert (await browser.client.get("/")).status_code == 303

        no_csrf = await browser.client.post("/login", data={"token": API_TOKEN})
        assert no_csrf.status_code == 403
        assert (await browser.client.get("/")).status_code == 303

        right = await browser.login(next_path="/?state=queued")
        assert right.status_code == 303 and right.headers["location"] == "/?state=queued"
        cookie = right.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}=")
        assert "httponly" in cookie.lower() and "samesite=lax" in cookie.lower()
        # The cookie is signed, not encrypted: it must not carry the token.
        value = browser.client.cookies[SESSION_COOKIE]
        payload = base64.b64decode(value.split(".")[0] + "==").decode()
        assert API_TOKEN not in payload and "auth" in json.loads(payload)

        page = await browser.client.get("/")
        assert page.status_code == 200
        assert "No jobs yet" in page.text and "pixhook submit text_to_video" in page.text
        assert API_TOKEN not in page.text

        # Logging in again goes straight through; logging out ends the session.
        assert (await browser.client.get("/login")).status_code == 303
        logout = await browser.client.post("/logout", data={"csrf": browser.csrf(page.text)})
        assert logout.status_code == 303 and logout.headers["location"] == "/login"
        assert (await browser.client.get("/")).status_code == 303


async def test_changing_the_token_ends_every_session(stack: Stack) -> None:
    async with dashboard_service(stack, run_background=False) as browser:
        await browser.login()
        cookies = dict(browser.client.cookies)
    async with dashboard_service(stack, run_background=False, api_token="a-new-token") as again:
        again.client.cookies.update(cookies)
        assert (await again.client.get("/")).status_code == 303


async def test_without_a_token_login_is_impossible_and_says_so(stack: Stack) -> None:
    async with dashboard_service(stack, run_background=False, api_token="") as browser:
        page = await browser.client.get("/login")
        assert "Logging in is impossible" in page.text and "PIXHOOK_API_TOKEN" in page.text
        attempt = await browser.client.post("/login", data={
            "token": "", "csrf": browser.csrf(page.text)})
        assert attempt.status_code == 503
        assert (await browser.client.get("/")).status_code == 303


@pytest.mark.parametrize("target, expected", [
    ("/jobs/job_1?x=1", "/jobs/job_1?x=1"), ("/", "/"), (None, "/"), ("", "/"),
    ("//evil.example", "/"), ("https://evil.example/", "/"), ("/\\evil.example", "/"),
    ("javascript:alert(1)", "/"), ("/\r\nSet-Cookie: x", "/"),
])
def test_next_is_only_ever_a_local_path(target: str | None, expected: str) -> None:
    assert safe_next(target) == expected


async def test_login_does_not_redirect_off_site(stack: Stack) -> None:
    async with dashboard_service(stack, run_background=False) as browser:
        response = await browser.login(next_path="//evil.example/")
        assert response.status_code == 303 and response.headers["location"] == "/"


async def test_jobs_list_filter_and_job_page_with_video(stack: Stack) -> None:
    async with dashboard_service(stack) as browser:
        await browser.login()
        job = await stack.submit(labels={"team": "ops"})
        await stack.wait_for(job["id"], "succeeded")
        await stack.wait_for_tasks(job["id"], "succeeded")

        listing = await browser.client.get("/")
        assert f'id="job-{job["id"]}"' in listing.text
        assert "badge-succeeded" in listing.text and SECRET_PROMPT_MARKER in listing.text
        assert "No jobs yet" not in listing.text.split('id="jobs-empty"')[0]

        only_succeeded = await browser.client.get("/", params={"state": "succeeded"})
        assert job["id"] in only_succeeded.text
        only_failed = await browser.client.get("/", params={"state": "failed"})
        assert job["id"] not in only_failed.text and "No failed jobs" in only_failed.text
        assert (await browser.client.get("/", params={"state": "bogus"})).status_code == 400

        page = await browser.client.get(f"/jobs/{job['id']}")
        assert page.status_code == 200
        for state in ("queued", "submitting", "generating", "succeeded"):
            assert f"badge-{state}" in page.text
        assert "team=ops" in page.text and "download" in page.text
        src = page.text.split('<video', 1)[1].split('src="', 1)[1].split('"', 1)[0]
        assert src.startswith("/media/")
        video = await browser.client.get(src)
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"

        detail = await stack.job(job["id"])
        credits = [json.loads(t["payload"]).get("credits") for t in detail["transitions"]
                   if t["payload"] and t["outcome"] == "applied"]
        known = [c for c in credits if isinstance(c, int)]
        if known:  # the row and the page show what PixVerse charged
            assert f'<td data-label="Credits" class="num">{known[-1]}</td>' in listing.text
            assert f"<dd>{known[-1]}</dd>" in page.text


async def test_unknown_job_is_a_404_page(stack: Stack) -> None:
    async with dashboard_service(stack, run_background=False) as browser:
        await browser.login()
        page = await browser.client.get("/jobs/job_nope")
        assert page.status_code == 404 and "No such job" in page.text


async def test_a_failing_store_is_a_friendly_503(stack: Stack) -> None:
    async with dashboard_service(stack, run_background=False) as browser:
        await browser.login()
        await browser.app.state.services.store.close()
        for path in ("/", "/jobs/job_x"):
            page = await browser.client.get(path)
            assert page.status_code == 503
            assert "The job store is unavailable" in page.text
            assert "Traceback" not in page.text and "StoreClosedError" not in page.text


class FlakyHandler(BaseHandler):
    """Dies on its first run, succeeds after a manual retry."""

    name = "flaky"
    events = frozenset({JobState.SUCCEEDED})
    runs: ClassVar[int] = 0

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        type(self).runs += 1
        if type(self).runs == 1:
            raise PermanentError("the render farm said no")


async def test_dead_task_is_retried_from_its_job_page(stack: Stack) -> None:
    settings = dataclasses.replace(stack.settings, handlers=("flaky",))
    handler_set = HandlerSet.from_settings(settings, available={"flaky": FlakyHandler})
    FlakyHandler.runs = 0
    async with dashboard_service(stack, handler_set, handlers=("flaky",)) as browser:
        await browser.login()
        job = await stack.submit()
        [task] = await stack.wait_for_tasks(job["id"], "dead")

        page = await browser.client.get(f"/jobs/{job['id']}")
        assert "the render farm said no" in page.text
        assert f'action="/tasks/{task["id"]}/retry"' in page.text

        forged = await browser.client.post(f"/tasks/{task['id']}/retry", data={"csrf": "x"})
        assert forged.status_code == 403
        assert (await stack.tasks(job_id=job["id"]))[0]["state"] == "dead"

        retried = await browser.client.post(f"/tasks/{task['id']}/retry",
                                            data={"csrf": browser.csrf(page.text)})
        assert retried.status_code == 303
        assert retried.headers["location"] == f"/jobs/{job['id']}#task-{task['id']}"
        await stack.wait_for_tasks(job["id"], "succeeded")
        after = await browser.client.get(f"/jobs/{job['id']}")
        assert "will run again now" in after.text
        assert f'action="/tasks/{task["id"]}/retry"' not in after.text
        assert after.text.count("badge-small") == 2  # two runs: dead, then succeeded

        again = await browser.client.post(f"/tasks/{task['id']}/retry",
                                          data={"csrf": browser.csrf(after.text)})
        assert again.status_code == 303
        assert "not dead" in (await browser.client.get(f"/jobs/{job['id']}")).text
        missing = await browser.client.post("/tasks/999999/retry",
                                            data={"csrf": browser.csrf(after.text)})
        assert missing.status_code == 404


async def test_secrets_never_reach_a_page(stack: Stack) -> None:
    secrets = [API_TOKEN, stack.settings.pixverse_api_key, stack.settings.pixverse_webhook_secret,
               stack.settings.secret_key, "callback-credential"]
    async with dashboard_service(stack, handlers=("download",)) as browser:
        await browser.login()
        job = await stack.submit(callback_url="http://127.0.0.1:9/hook?key=callback-credential")
        await stack.wait_for(job["id"], "succeeded")
        pages = [await browser.client.get(path)
                 for path in ("/", f"/jobs/{job['id']}", "/?state=succeeded")]
        pages.append(await browser.client.get("/login", follow_redirects=True))
        for page in pages:
            assert page.status_code == 200
            for secret in secrets:
                assert secret not in page.text
        assert "http://127.0.0.1/…" in pages[1].text  # only the callback's host


async def _events(browser: Browser, params: dict[str, str], want: Any,
                  timeout: float = 10.0) -> dict[str, Any]:
    """Read ``/events`` until an event satisfies ``want``; return its data."""
    async def read() -> dict[str, Any]:
        async with browser.client.stream("GET", "/events", params=params) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            name = ""
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    name = line[len("event: "):]
                elif line.startswith("data: "):
                    data = dict(json.loads(line[len("data: "):]))
                    data["event"] = name
                    if want(data):
                        return data
        raise AssertionError("the stream ended")

    return await asyncio.wait_for(read(), timeout)


async def test_events_stream_pushes_job_changes(stack: Stack) -> None:
    async with dashboard_service(stack) as browser:
        await browser.login()
        since = str(time.time())
        job_id: dict[str, str] = {}

        async def submit_soon() -> None:
            await asyncio.sleep(0.3)
            job_id["id"] = (await stack.submit())["id"]

        submitter = asyncio.create_task(submit_soon())
        event = await _events(browser, {"since": since},
                              lambda d: d["event"] == "job" and d["state"] == "succeeded")
        await submitter
        assert event["id"] == job_id["id"] and event["matches"] is True
        assert f'id="job-{job_id["id"]}"' in event["html"] and "badge-succeeded" in event["html"]

        # Filtered on another state, the same change says the row no longer belongs.
        filtered = await _events(browser, {"since": since, "state": "queued"},
                                 lambda d: d["event"] == "job" and d["state"] == "succeeded")
        assert filtered["matches"] is False

        # A job page learns that its job or tasks changed since it was rendered.
        changed = await _events(browser, {"job": job_id["id"], "sig": "stale"},
                                lambda d: d["event"] == "changed")
        assert changed["id"] == job_id["id"]


async def test_the_list_pages_with_the_store_cursor(stack: Stack) -> None:
    async with dashboard_service(stack, run_background=False) as browser:
        await browser.login()
        store = browser.app.state.services.store
        ids = [(await store.create_job(kind="text_to_video", params={"prompt": f"p{n}"})).id
               for n in range(51)]
        first = await browser.client.get("/")
        assert first.text.count('data-job="') == 50 and ids[0] not in first.text
        older = first.text.split('href="/?cursor=', 1)[1].split('"', 1)[0]
        second = await browser.client.get(f"/?cursor={older}")
        assert second.text.count('data-job="') == 1 and ids[0] in second.text
        assert 'data-first="0"' in second.text and "Older" not in second.text
