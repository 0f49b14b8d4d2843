"""``/api``: the HTTP API for integrations (bearer token ``PIXHOOK_API_TOKEN``).

* ``POST /api/jobs``        ``{"kind", "params", "callback_url"?, "then"?, "labels"?}`` -> 201
* ``GET  /api/jobs/{id}``   the job with its transitions, unapplied webhooks and tasks
* ``GET  /api/jobs``        ``?state=&kind=&limit=&cursor=`` newest first, with ``next_cursor``;
  ``?q=`` searches: a job, trace or video id, or text in a prompt or a label (``key=value``)
* ``POST /api/jobs/{id}/cancel``  cancel a job (``cancelled_at`` is set). One PixVerse has not
  accepted (queued, or submitting without a video id) is ``rejected`` and never sent; if its
  create call is in flight, PixVerse may still make (and charge for) the video, but its answer
  changes nothing. One PixVerse accepted (generating) is still made and its credits are
  spent, since PixVerse has no cancel, but no handler or follow-up runs for it. Cancelling
  again answers the same; a job that finished uncancelled is 409
* ``GET  /api/tasks``       handler tasks, ``?state=dead&job_id=&handler=&limit=``, oldest first
  (``?order=newest``: newest first, as ``pixhook tasks`` lists them)
* ``GET  /api/tasks/{id}``  one task with its runs (attempt, outcome, error, duration)
* ``POST /api/tasks/{id}/retry``  revive a dead task: it runs again now, with fresh attempts
* ``POST /api/tasks/retry``  revive dead tasks together: ``{"task_ids": [...]}`` or
  ``{"all": true}``, either narrowed by ``handler`` and ``job_id``; answers the revived ones
* ``POST /api/tasks/{id}/replay``  run a finished task (succeeded or dead) again: one handler
  for one transition, a forwarded event re-sent; its runs so far stay in its history

Errors are JSON ``{"error": message, "field": name?}``: 401 without the token, 404 for an
unknown job or task, 409 for retrying a task that is not dead or cancelling a finished job,
413 for a body over ``PIXHOOK_API_MAX_BYTES``, 422 for invalid input (the field is named).
What is refused, and why, is in :mod:`service.api_input`; what a job shows (no credentials,
no server paths), in :func:`job_json` and :mod:`service.api_output`.

``POST /api/jobs`` honours ``Idempotency-Key`` (Stripe's semantics): a key is the caller's
(the bearer token's) for ``PIXHOOK_IDEMPOTENCY_TTL`` seconds; the same request with it again
gets the original response, marked ``Idempotent-Replayed: true``; another request with it, a
422 (field ``Idempotency-Key``). The key is claimed in the transaction that creates the job
(:mod:`service.store.idempotency`), so concurrent requests make one job.
"""

from __future__ import annotations

import dataclasses
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service import api_input
from service.api_input import InputError
from service.api_output import APIResponse, masked_url
from service.lifecycle import JobState
from service.media import MediaLinks
from service.pixverse.errors import InvalidRequest
from service.settings import Settings
from service.store import (
    IdempotencyKey,
    IdempotencyKeyReusedError,
    Job,
    JobNotFoundError,
    JobStateError,
    Store,
    Task,
    TaskNotFoundError,
    TaskRun,
    TaskState,
    TaskStateError,
    Transition,
    WebhookDelivery,
)
from service.submission import Submitter, param_warnings

#: Largest page a list call returns.
MAX_PAGE: int = 200


def error(status: int, message: str, field: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


def invalid_request(exc: InvalidRequest) -> JSONResponse:
    """422 naming the first bad field, with ``errors`` listing every one (PixVerse's rules are
    checked all at once)."""
    def path(field: str) -> str:
        top_level = field == "kind" or field.startswith("then")
        return field if top_level else f"params.{field}"

    problems = [{"field": path(p.field), "error": p.reason,
                 **({"allowed": [str(v) for v in p.allowed]} if p.allowed else {})}
                for p in exc.errors]
    return JSONResponse({"error": str(exc), "field": path(exc.field), "errors": problems},
                        status_code=422)


def input_error(exc: InputError) -> JSONResponse:
    """The answer to input :mod:`service.api_input` refused."""
    response = error(exc.status, str(exc), exc.field)
    response.headers.update(exc.headers)
    return response


def job_json(job: Job, links: MediaLinks | None = None) -> dict[str, Any]:
    """A job as /api shows it: ``callback_url`` masked (:func:`masked_url`), and the video as
    its signed link, ``media_url`` (``None`` without a video, ``links`` or
    ``PIXHOOK_PUBLIC_URL``), never ``media_path``: a path on pixhook's disk is no use to a
    client and tells an attacker where things are."""
    data = dataclasses.asdict(job)
    data["state"] = job.state.value
    data["callback_url"] = None if job.callback_url is None else masked_url(job.callback_url)
    del data["media_path"]
    data["media_url"] = links.url(job.id) if links is not None and job.media_path else None
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


def unapplied_json(delivery: WebhookDelivery) -> dict[str, Any]:
    """A verified webhook kept for a job that changed nothing (``error`` says why)."""
    return {"id": delivery.id, "received_at": delivery.received_at,
            "video_id": delivery.video_id, "nonce": delivery.nonce, "error": delivery.error,
            "body": delivery.body.decode("utf-8", "replace")}


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
        given = bearer_token(request)
        if not expected or given is None:
            return False
        return hmac.compare_digest(given.encode(), expected.encode())


def bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer TOKEN``, or ``None`` for another scheme."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


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
        self._links = MediaLinks(settings)

    def routes(self) -> list[Route]:
        return [
            Route("/api/jobs", self._guard(self.create_job), methods=["POST"]),
            Route("/api/jobs", self._guard(self.list_jobs), methods=["GET"]),
            Route("/api/jobs/{job_id}", self._guard(self.get_job), methods=["GET"]),
            Route("/api/jobs/{job_id}/cancel", self._guard(self.cancel_job), methods=["POST"]),
        ]

    async def create_job(self, request: Request) -> JSONResponse:
        """201 with the job; with ``Idempotency-Key``, the same request again gets the
        original answer (``Idempotent-Replayed: true``) and another request a 422."""
        try:
            key = api_input.idempotency_key(request)
            body = await api_input.read_body(request, self._settings)
            new = api_input.new_job(body)
        except InputError as exc:
            return input_error(exc)
        replayed = False
        try:
            if key is None:
                job = await self._submitter.submit(new.kind, new.params,
                                                   callback_url=new.callback_url,
                                                   then=new.then, labels=new.labels)
            else:
                job, replayed = await self._submitter.submit_once(
                    self._idempotency(request, key, body), new.kind, new.params,
                    callback_url=new.callback_url, then=new.then, labels=new.labels)
        except InvalidRequest as exc:
            return invalid_request(exc)
        except IdempotencyKeyReusedError as exc:
            return error(422, f"{exc}; send a new key with a new request",
                         api_input.IDEMPOTENCY_HEADER)
        # Params pixhook does not know were stored and are sent as given: say so.
        response = APIResponse({**job_json(job, self._links), "warnings": param_warnings(job)},
                               status_code=201)
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return response

    def _idempotency(self, request: Request, key: str, body: dict[str, Any]) -> IdempotencyKey:
        # Keys are the caller's own: another token's same key is another key.
        return IdempotencyKey(caller=api_input.caller_id(bearer_token(request) or ""),
                              key=key, request_hash=api_input.request_hash(body),
                              ttl=self._settings.idempotency_ttl)

    async def get_job(self, request: Request) -> JSONResponse:
        job_id = api_input.path_id(request.path_params["job_id"])
        # One moment: the job's state, its history and its tasks agree.
        found = None if job_id is None else await self._store.job_history(
            job_id, unapplied_limit=MAX_PAGE)
        if found is None:
            return error(404, "no such job")
        return APIResponse({**job_json(found.job, self._links),
                            "transitions": [transition_json(t) for t in found.transitions],
                            "unapplied_webhooks": [unapplied_json(d)
                                                   for d in found.unapplied_webhooks],
                            "tasks": [task_json(t) for t in found.tasks]})

    async def list_jobs(self, request: Request) -> JSONResponse:
        query = request.query_params
        state = query.get("state")
        if state is not None and state not in {s.value for s in JobState}:
            return error(422, f"unknown state {state!r}", "state")
        limit = _limit(query)
        if isinstance(limit, JSONResponse):
            return limit
        try:
            kind = api_input.query_text(query, "kind")
            cursor = api_input.query_text(query, "cursor")
            term = api_input.query_text(query, "q")
        except InputError as exc:
            return input_error(exc)
        if term and term.strip():
            jobs, next_cursor = await self._store.search_jobs(
                term, state=JobState(state) if state else None, kind=kind, limit=limit,
                cursor=cursor)
        else:
            jobs, next_cursor = await self._store.list_jobs(
                state=JobState(state) if state else None, kind=kind, limit=limit,
                cursor=cursor)
        return APIResponse({"jobs": [job_json(j, self._links) for j in jobs],
                            "next_cursor": next_cursor})

    async def cancel_job(self, request: Request) -> JSONResponse:
        """Cancel a job (see :meth:`Store.cancel_job`): 200 with the job, also when it was
        cancelled before; 409 for a job that finished uncancelled; 404 for an unknown id."""
        job_id = api_input.path_id(request.path_params["job_id"])
        if job_id is None:
            return error(404, "no such job")
        try:
            job = await self._store.cancel_job(job_id)
        except JobNotFoundError:
            return error(404, "no such job")
        except JobStateError as exc:
            return error(409, str(exc))
        self._submitter.wake()  # a job cancelled mid-submission frees an in-flight slot
        return APIResponse(job_json(job, self._links))


class TasksAPI:
    """``/api/tasks``: the handler task queue, including dead tasks, and manual retry."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self._store = store
        self._settings = settings
        self._guard = BearerGuard(settings)

    def routes(self) -> list[Route]:
        return [
            Route("/api/tasks", self._guard(self.list_tasks), methods=["GET"]),
            Route("/api/tasks/retry", self._guard(self.retry_dead_tasks), methods=["POST"]),
            # Plain {task_id} (not :int) so a malformed id gets this API's JSON 404.
            Route("/api/tasks/{task_id}", self._guard(self.get_task), methods=["GET"]),
            Route("/api/tasks/{task_id}/retry", self._guard(self.retry_task),
                  methods=["POST"]),
            Route("/api/tasks/{task_id}/replay", self._guard(self.replay_task),
                  methods=["POST"]),
        ]

    async def list_tasks(self, request: Request) -> JSONResponse:
        query = request.query_params
        state = query.get("state")
        if state is not None and state not in {s.value for s in TaskState}:
            return error(422, f"unknown task state {state!r}", "state")
        order = query.get("order", "oldest")
        if order not in ("oldest", "newest"):
            return error(422, f"unknown order {order!r} (oldest, newest)", "order")
        limit = _limit(query, default=MAX_PAGE)
        if isinstance(limit, JSONResponse):
            return limit
        try:
            job_id = api_input.query_text(query, "job_id")
            handler = api_input.query_text(query, "handler")
        except InputError as exc:
            return input_error(exc)
        tasks = await self._store.list_tasks(
            job_id=job_id, state=TaskState(state) if state else None, handler=handler,
            limit=limit, newest_first=order == "newest")
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

    async def retry_dead_tasks(self, request: Request) -> JSONResponse:
        """Revive dead tasks together (:meth:`Store.retry_dead_tasks`): 200 with the revived
        ones; tasks named that are not dead (or do not exist) are left out."""
        try:
            body = await api_input.read_body(request, self._settings)
            wanted = api_input.bulk_retry(body)
        except InputError as exc:
            return input_error(exc)
        tasks = await self._store.retry_dead_tasks(
            task_ids=wanted.task_ids, handler=wanted.handler, job_id=wanted.job_id)
        return JSONResponse({"retried": len(tasks), "tasks": [task_json(t) for t in tasks]})

    async def replay_task(self, request: Request) -> JSONResponse:
        """Run a finished task again (:meth:`Store.replay_task`): 200 with the task, pending;
        409 while it is pending or running."""
        task_id = _task_id(request)
        if task_id is None:
            return error(404, "no such task")
        try:
            task = await self._store.replay_task(task_id)
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
