"""The dashboard's pages: the jobs list (search, counts), one job, login and logout, and
task retry (the operator's other pages: :mod:`service.dashboard.operator`).

Every page needs a login (see :mod:`service.dashboard.auth`). A failing store gives a
friendly 503 page, an unknown job a 404 page: never a traceback. Past
:data:`~service.dashboard.ratelimit.MAX_FAILED_LOGINS` failed logins a minute from one
address, logins from it get 429 with ``Retry-After``.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Final
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.dashboard import auth, forwarded, present
from service.dashboard.events import job_signature
from service.dashboard.ratelimit import LoginLimiter
from service.dashboard.templating import page
from service.lifecycle import JobState
from service.media import MediaLinks
from service.settings import Settings
from service.store import (
    StorageError,
    Store,
    Task,
    TaskNotFoundError,
    TaskState,
    TaskStateError,
)

logger = logging.getLogger(__name__)

#: Jobs per page of the list.
PAGE_SIZE: Final = 50
_STATES: Final = frozenset(state.value for state in JobState)


def error_page(request: Request, status: int, title: str, message: str) -> Response:
    return page(request, "error.html", {"title": title, "message": message, "status": status},
                status_code=status)


def store_errors(endpoint: auth.Endpoint) -> auth.Endpoint:
    """A store failure becomes a 503 page; it is logged, and never shown in detail."""
    @functools.wraps(endpoint)
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except StorageError as exc:
            logger.warning("dashboard: the store failed on %s: %s", request.url.path, exc,
                           extra={"action": "dashboard_store_error"})
            return error_page(request, 503, "The job store is unavailable",
                               "pixhook cannot read its database right now. The page will "
                               "work again once the store is back; try again in a moment.")
    return wrapped


class DashboardPages:
    """The page endpoints; :func:`service.dashboard.dashboard_routes` mounts them."""

    def __init__(self, settings: Settings, store: Store, credits: present.CreditsBook) -> None:
        self._settings = settings
        self._store = store
        self._credits = credits
        self._links = MediaLinks(settings, store)
        #: Failed logins per client address (in this process's memory).
        self.login_limiter = LoginLimiter()
        required = auth.login_required(settings)
        # The store errors wrapper goes outside: checking the login reads the store too.
        self.jobs = store_errors(required(self._jobs))
        self.job = store_errors(required(self._job))
        self.retry_task = store_errors(required(self._retry_task))
        self.login = store_errors(self._login)
        self.logout = store_errors(self._logout)

    async def _jobs(self, request: Request) -> Response:
        query = request.query_params
        state = query.get("state") or None
        if state is not None and state not in _STATES:
            return error_page(request, 400, "Unknown state",
                               f"There is no job state called “{state}”.")
        cursor = query.get("cursor") or None
        term = (query.get("q") or "").strip()[:200] or None
        since = time.time()  # before reading: a change during the read is sent live
        if term:
            jobs, next_cursor = await self._store.search_jobs(
                term, state=JobState(state) if state else None, limit=PAGE_SIZE, cursor=cursor)
        else:
            jobs, next_cursor = await self._store.list_jobs(
                state=JobState(state) if state else None, limit=PAGE_SIZE, cursor=cursor)
        rows = await self._credits.rows(jobs)
        live = {"since": repr(since), **({"state": state} if state else {})}
        kept = {**({"state": state} if state else {}), **({"q": term} if term else {})}
        counts = await self._store.count_jobs_by_state()
        return page(request, "jobs.html", {
            "rows": rows, "state": state, "cursor": cursor, "first_page": cursor is None,
            "page_size": PAGE_SIZE, "term": term,
            "counts": {s.value: n for s, n in counts.items()}, "total": sum(counts.values()),
            "failed_handlers": await self._store.dead_tasks_by_job([job.id for job in jobs]),
            "newest_url": "/?" + urlencode(kept) if kept else "/",
            "next_url": ("/?" + urlencode({**kept, "cursor": next_cursor}))
            if next_cursor else None,
            # A search result does not take live rows: a new job may not match it.
            "live_url": None if term else "/events?" + urlencode(live),
        })

    async def _job(self, request: Request) -> Response:
        found = await self._store.job_history(request.path_params["job_id"])
        if found is None:
            return error_page(request, 404, "No such job",
                               "No job has that id. It may be a typo, or a different "
                               "database.")
        job, transitions, unapplied = found.job, found.transitions, found.unapplied_webhooks
        tasks = found.tasks
        signature = await job_signature(self._store, job.id)
        runs = {task.id: await self._store.list_task_runs(task.id) for task in tasks}
        deliveries = await self._store.list_job_deliveries(job.id)
        download = next((task for task in tasks if task.handler == "download"), None)
        return page(request, "job.html", {
            "job": job, "state": job.state.value, "prompt": present.prompt_of(job),
            "credits": present.credits_of(transitions),
            "params": present.pretty_json(job.params),
            "labels": job.labels, "callback_host": present.callback_host(job.callback_url),
            "transitions": transitions, "pretty_payload": present.pretty_payload,
            "unapplied": unapplied,
            "tasks": tasks, "runs": runs,
            "finished": (TaskState.SUCCEEDED, TaskState.DEAD),
            "deliveries": deliveries,
            "polls": [t for t in transitions if t.source.value != "webhook"],
            "video_src": f"/media/{self._links.token(job.id)}" if job.media_path else None,
            "download": download,
            "live_url": "/events?" + urlencode({"job": job.id, "sig": signature}),
        })

    async def _retry_task(self, request: Request) -> Response:
        return await task_action(
            request, self._store.retry_task, action="dashboard_retry", verb="retried",
            refused="{state}, not dead: there is nothing to retry.",
            done="will run again now.", store=self._store)

    # -- login -----------------------------------------------------------------------------

    async def login_form(self, request: Request) -> Response:
        target = auth.safe_next(request.query_params.get("next"))
        if auth.logged_in(request, self._settings):
            return RedirectResponse(target, status_code=303)
        return self._login_page(request, target)

    async def _login(self, request: Request) -> Response:
        form = await request.form()
        target = auth.safe_next(str(form.get("next") or "/"))
        if not self._settings.api_token:
            return self._login_page(request, target, status_code=503)
        address = forwarded.client_address(request.scope, self._settings)
        wait = self.login_limiter.retry_after(address)
        if wait is not None:
            logger.warning("dashboard: login refused, too many failures from %s", address,
                           extra={"action": "dashboard_login_limited"})
            response = self._login_page(
                request, target, status_code=429,
                error=f"Too many failed logins from your address. Try again in {wait} s.")
            response.headers["Retry-After"] = str(wait)
            return response
        if not auth.csrf_ok(request, form.get("csrf")):
            return self._login_page(request, target, status_code=403,
                                    error="The form expired (or cookies are off). Try again.")
        token = form.get("token")
        if not isinstance(token, str) or not auth.token_matches(self._settings, token):
            self.login_limiter.failed(address)
            logger.info("dashboard: a login from %s failed", address,
                        extra={"action": "dashboard_login"})
            return self._login_page(request, target, status_code=401,
                                    error="That is not the API token.")
        await auth.log_in(request, self._settings, self._store)
        self.login_limiter.succeeded(address)
        logger.info("dashboard: logged in", extra={"action": "dashboard_login"})
        return RedirectResponse(target, status_code=303)

    async def _logout(self, request: Request) -> Response:
        form = await request.form()
        if auth.csrf_ok(request, form.get("csrf")):
            await auth.log_out(request, self._store)
        return RedirectResponse("/login", status_code=303)

    def _login_page(self, request: Request, target: str, *, status_code: int = 200,
                    error: str | None = None) -> Response:
        return page(request, "login.html", {
            "next": target, "error": error, "configured": bool(self._settings.api_token),
        }, status_code=status_code, logged_in=False)


async def task_action(request: Request, act: Callable[[int], Awaitable[Task]], *, store: Store,
                      action: str, verb: str, refused: str, done: str) -> Response:
    """A dashboard button on one task (retry, replay): check the form, act, and go back to the
    task on its job's page with a confirmation. ``refused`` says why a task in the wrong state
    was left alone (``{state}`` is its state), ``done`` what now happens to it."""
    form = await request.form()
    if not auth.csrf_ok(request, form.get("csrf")):
        return error_page(request, 403, "This form has expired",
                          "Go back, reload the page and press the button again.")
    task_id = request.path_params["task_id"]
    try:
        task = await act(task_id)
    except TaskNotFoundError:
        return error_page(request, 404, "No such task", "No task has that id.")
    except TaskStateError:
        current = await store.get_task(task_id)
        if current is None:
            return error_page(request, 404, "No such task", "No task has that id.")
        auth.flash(request, f"Task {task_id} is " + refused.format(state=current.state.value))
        return RedirectResponse(f"/jobs/{current.job_id}#task-{task_id}", status_code=303)
    logger.info("dashboard: task %s %s", task.id, verb,
                extra={"action": action, "task_id": task.id})
    auth.flash(request, f"Task {task.id} ({task.handler}) {done}")
    return RedirectResponse(f"/jobs/{task.job_id}#task-{task.id}", status_code=303)
