"""``/api``: the HTTP API for integrations (bearer token ``PIXHOOK_API_TOKEN``).

* ``POST /api/jobs``        ``{"kind", "params", "callback_url"?, "then"?, "labels"?}`` -> 201
* ``GET  /api/jobs/{id}``   the job with its transitions
* ``GET  /api/jobs``        ``?state=&kind=&limit=&cursor=`` newest first, with ``next_cursor``
* ``GET  /api/tasks``       handler tasks, ``?state=dead&job_id=&handler=&limit=``, oldest first
* ``GET  /api/tasks/{id}``  one task with its runs (attempt, outcome, error, duration)
* ``POST /api/tasks/{id}/retry``  revive a dead task: it runs again now, with fresh attempts

Errors are JSON ``{"error": message, "field": name?}``: 401 without the token, 404 for an
unknown job or task, 409 for retrying a task that is not dead, 422 for invalid input (the
field is named).
"""

from __future__ import annotations

import dataclasses
import hmac
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.lifecycle import JobState
from service.pixverse.errors import InvalidRequest
from service.settings import Settings
from service.store import (
    Job,
    Store,
    Task,
    TaskNotFoundError,
    TaskRun,
    TaskState,
    TaskStateError,
    Transition,
)
from service.submission import Submitter

#: Largest page a list call returns.
MAX_PAGE: int = 200


def error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def job_json(job: Job) -> dict[str, Any]:
    data = dataclasses.asdict(job)
    data["state"] = job.state.value
    if job.video_id is not None:
        # JavaScript clients lose precision past 2**53; the string form is always exact.
        data["video_id_str"] = str(job.video_id)
    return data


def _enum_values(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        data[key] = getattr(data[key], "value", data[key])
    return data


def task_json(task: Task) -> dict[str, Any]:
    return _enum_values(dataclasses.asdict(task), "state")


def task_run_json(run: TaskRun) -> dict[str, Any]:
    return {**_enum_values(dataclasses.asdict(run), "outcome"), "duration": run.duration}


def transition_json(transition: Transition) -> dict[str, Any]:
    data = dataclasses.asdict(transition)
    for key in ("from_state", "to_state", "outcome", "source"):
        value = data[key]
        data[key] = getattr(value, "value", value)
    return data


class BearerGuard:
    """Wraps endpoints so they answer 401 without ``Authorization: Bearer PIXHOOK_API_TOKEN``
    (compared in constant time; an empty token refuses everyone)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def __call__(self, endpoint: Any) -> Any:
        async def guarded(request: Request) -> JSONResponse:
            if not self.authorised(request):
                response = error(401, "missing or wrong bearer token")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
            result: JSONResponse = await endpoint(request)
            return result
        return guarded

    def authorised(self, request: Request) -> bool:
        expected = self._settings.api_token
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if not expected or scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), expected.encode())


def _limit(query: Any, default: int = 50) -> int | JSONResponse:
    try:
        limit = int(query.get("limit", str(default)))
    except ValueError:
        return error(422, "limit must be an integer", "limit")
    if not 1 <= limit <= MAX_PAGE:
        return error(422, f"limit must be 1..{MAX_PAGE}", "limit")
    return limit


class JobsAPI:
    """The ``/api`` routes; ``routes()`` gives them to the app."""

    def __init__(self, store: Store, submitter: Submitter, settings: Settings) -> None:
        self._store = store
        self._submitter = submitter
        self._settings = settings
        self._guard = BearerGuard(settings)

    def routes(self) -> list[Route]:
        return [
            Route("/api/jobs", self._guard(self.create_job), methods=["POST"]),
            Route("/api/jobs", self._guard(self.list_jobs), methods=["GET"]),
            Route("/api/jobs/{job_id}", self._guard(self.get_job), methods=["GET"]),
        ]

    async def create_job(self, request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except (ValueError, UnicodeDecodeError):
            return error(422, "body must be a JSON object")
        if not isinstance(body, dict):
            return error(422, "body must be a JSON object")
        kind, params = body.get("kind"), body.get("params", {})
        if not isinstance(kind, str):
            return error(422, "kind is required", "kind")
        if not isinstance(params, dict):
            return error(422, "params must be an object", "params")
        labels = body.get("labels")
        if labels is not None and not (isinstance(labels, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items())):
            return error(422, "labels must map strings to strings", "labels")
        callback_url = body.get("callback_url")
        if callback_url is not None and not (
                isinstance(callback_url, str) and callback_url.startswith(("http://", "https://"))):
            return error(422, "callback_url must be an http(s) URL", "callback_url")
        then = body.get("then")
        if then is not None and not isinstance(then, list):
            return error(422, "then must be a list of steps", "then")
        try:
            job = await self._submitter.submit(kind, params, callback_url=callback_url,
                                               then=then, labels=labels)
        except InvalidRequest as exc:
            top_level = exc.field == "kind" or exc.field.startswith("then")
            return error(422, str(exc), exc.field if top_level else f"params.{exc.field}")
        return JSONResponse(job_json(job), status_code=201)

    async def get_job(self, request: Request) -> JSONResponse:
        job = await self._store.get_job(request.path_params["job_id"])
        if job is None:
            return error(404, "no such job")
        transitions = await self._store.list_transitions(job.id)
        tasks = await self._store.list_tasks(job_id=job.id)
        return JSONResponse({**job_json(job),
                             "transitions": [transition_json(t) for t in transitions],
                             "tasks": [task_json(t) for t in tasks]})

    async def list_jobs(self, request: Request) -> JSONResponse:
        query = request.query_params
        state = query.get("state")
        if state is not None and state not in {s.value for s in JobState}:
            return error(422, f"unknown state {state!r}", "state")
        limit = _limit(query)
        if isinstance(limit, JSONResponse):
            return limit
        jobs, next_cursor = await self._store.list_jobs(
            state=JobState(state) if state else None, kind=query.get("kind"), limit=limit,
            cursor=query.get("cursor"),
        )
        return JSONResponse({"jobs": [job_json(j) for j in jobs], "next_cursor": next_cursor})


class TasksAPI:
    """``/api/tasks``: the handler task queue, including dead tasks, and manual retry."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._guard = BearerGuard(settings)

    def routes(self) -> list[Route]:
        return [
            Route("/api/tasks", self._guard(self.list_tasks), methods=["GET"]),
            # Plain {task_id} (not :int) so a malformed id gets this API's JSON 404.
            Route("/api/tasks/{task_id}", self._guard(self.get_task), methods=["GET"]),
            Route("/api/tasks/{task_id}/retry", self._guard(self.retry_task),
                  methods=["POST"]),
        ]

    async def list_tasks(self, request: Request) -> JSONResponse:
        query = request.query_params
        state = query.get("state")
        if state is not None and state not in {s.value for s in TaskState}:
            return error(422, f"unknown task state {state!r}", "state")
        limit = _limit(query, default=MAX_PAGE)
        if isinstance(limit, JSONResponse):
            return limit
        tasks = await self._store.list_tasks(
            job_id=query.get("job_id"), state=TaskState(state) if state else None,
            handler=query.get("handler"), limit=limit)
        return JSONResponse({"tasks": [task_json(t) for t in tasks]})

    async def get_task(self, request: Request) -> JSONResponse:
        task_id = _task_id(request)
        task = None if task_id is None else await self._store.get_task(task_id)
        if task is None:
            return error(404, "no such task")
        runs = await self._store.list_task_runs(task.id)
        return JSONResponse({**task_json(task), "runs": [task_run_json(r) for r in runs]})

    async def retry_task(self, request: Request) -> JSONResponse:
        task_id = _task_id(request)
        if task_id is None:
            return error(404, "no such task")
        try:
            task = await self._store.retry_task(task_id)
        except TaskNotFoundError:
            return error(404, "no such task")
        except TaskStateError as exc:
            return error(409, str(exc))
        return JSONResponse(task_json(task))


def _task_id(request: Request) -> int | None:
    """The path's task id, or ``None`` when it is not a 64-bit integer (no such task)."""
    try:
        value = int(request.path_params["task_id"])
    except ValueError:
        return None
    return value if -(2**63) <= value < 2**63 else None
