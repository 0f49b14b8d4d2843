"""The OpenAPI 3.1 description of ``/api``, served at ``GET /openapi.json``.

Written out by hand from the same vocabularies the API validates with (job states, task states,
generation kinds), so clients can generate code from it and the test suite can check every
response against it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service import __version__, api_input
from service.api import MAX_PAGE
from service.lifecycle import JobState, TransitionSource
from service.pixverse.models import REQUEST_TYPES
from service.store import TaskRunOutcome, TaskState
from service.store.operator import MAX_BULK_IDS


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    meaning = {401: "Missing or wrong bearer token", 404: "Not found",
               408: "The body did not arrive whole within PIXHOOK_BODY_TIMEOUT",
               409: "The task is not dead",
               413: "The body is over PIXHOOK_API_MAX_BYTES",
               422: "Invalid input; `field` names it"}
    return {str(code): _json(_ref("Error"), meaning[code]) for code in codes}


_NUMBER = {"type": "number"}
_STRING = {"type": "string"}
_STRING_MAP = {"type": "object", "additionalProperties": _STRING}
#: Text a filter or cursor may hold: anything but NUL (422).
_TEXT = {"type": "string", "pattern": "^[^\\u0000]*$"}
_JOB_STATES = sorted(state.value for state in JobState)

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"],
              "properties": {"error": _STRING, "field": _STRING,
                             # On a 422 from PixVerse's rules: every bad field, not the first.
                             "errors": {"type": "array", "items": {
                                 "type": "object", "required": ["field", "error"],
                                 "properties": {"field": _STRING, "error": _STRING,
                                                "allowed": {"type": "array",
                                                            "items": _STRING}}}}}},
    "Step": {"type": "object", "required": ["kind"],
             "properties": {"kind": {"enum": sorted(REQUEST_TYPES)},
                            "params": {"type": "object"}}},
    "NewJob": {
        "type": "object", "required": ["kind"],
        "properties": {
            "kind": {"enum": sorted(REQUEST_TYPES)},
            "params": {"type": "object", "description": "The PixVerse request parameters."},
            "callback_url": {
                "type": "string", "format": "uri", "maxLength": api_input.MAX_URL_CHARS,
                "description": "http(s), without user:password@ (refused). Each event of the "
                               "job is POSTed here, signed."},
            "then": {"type": "array", "items": _ref("Step"), "maxItems": api_input.MAX_STEPS},
            "labels": {"type": "object", "maxProperties": api_input.MAX_LABELS,
                       "propertyNames": {"maxLength": api_input.MAX_LABEL_KEY_CHARS},
                       "additionalProperties": {
                           "type": "string", "maxLength": api_input.MAX_LABEL_VALUE_CHARS}},
        },
        "description": "No string anywhere may hold NUL or a lone surrogate, numbers are "
                       f"finite, and nesting is at most {api_input.MAX_DEPTH} levels deep "
                       "(422 naming the field).",
    },
    "Job": {
        "type": "object",
        "required": ["id", "kind", "state", "params", "trace_id", "video_id", "labels",
                     "callback_url", "then", "parent_job_id", "attempts", "last_error",
                     "created_at", "updated_at", "state_changed_at", "last_event_at"],
        "properties": {
            "id": _STRING, "kind": _STRING, "state": {"enum": _JOB_STATES},
            "params": {"type": "object"}, "trace_id": _STRING,
            "video_id": _nullable({"type": "integer"}), "video_id_str": _STRING,
            "labels": _STRING_MAP,
            "callback_url": _nullable({
                "type": "string", "description": "As given, but with secret-looking query "
                                                 "values (token, key, sig...) and any fragment "
                                                 "shown as ***"}),
            "then": {"type": "array", "items": {"type": "object"}},
            "parent_job_id": _nullable(_STRING), "attempts": {"type": "integer"},
            "last_error": _nullable(_STRING), "next_attempt_at": _nullable(_NUMBER),
            "next_poll_at": _nullable(_NUMBER), "created_at": _NUMBER, "updated_at": _NUMBER,
            "state_changed_at": _NUMBER, "last_event_at": _NUMBER,
            "media_url": _nullable({
                "type": "string", "format": "uri",
                "description": "A signed, expiring link to the downloaded video (null before "
                               "the download, or without PIXHOOK_PUBLIC_URL)"}),
            "media_sha256": _nullable(_STRING),
            "media_size": _nullable({"type": "integer"}),
            "cancelled_at": _nullable(_NUMBER),
        },
    },
    "Transition": {
        "type": "object",
        "required": ["id", "job_id", "from_state", "to_state", "outcome", "source", "reason"],
        "properties": {
            "id": {"type": "integer"}, "job_id": _STRING,
            "from_state": _nullable({"enum": _JOB_STATES}), "to_state": {"enum": _JOB_STATES},
            "outcome": {"enum": ["applied", "duplicate", "ignored"]},
            "source": {"enum": sorted(source.value for source in TransitionSource)},
            "reason": _STRING, "payload": _nullable(_STRING),
            "delivery_id": _nullable({"type": "integer"}), "received_at": _NUMBER,
            "recorded_at": _NUMBER,
        },
    },
    "Task": {
        "type": "object",
        "required": ["id", "job_id", "transition_id", "handler", "idempotency_key", "state",
                     "attempts"],
        "properties": {
            "id": {"type": "integer"}, "job_id": _STRING, "transition_id": {"type": "integer"},
            "handler": _STRING, "idempotency_key": _STRING,
            "state": {"enum": sorted(state.value for state in TaskState)},
            "attempts": {"type": "integer"}, "run_after": _NUMBER,
            "lease_until": _nullable(_NUMBER), "last_error": _nullable(_STRING),
            "created_at": _NUMBER, "updated_at": _NUMBER,
        },
    },
    "TaskRun": {
        "type": "object", "required": ["attempt", "outcome", "started_at", "finished_at"],
        "properties": {
            "id": {"type": "integer"}, "task_id": {"type": "integer"},
            "attempt": {"type": "integer"},
            "outcome": {"enum": sorted(outcome.value for outcome in TaskRunOutcome)},
            "error": _nullable(_STRING), "started_at": _NUMBER, "finished_at": _NUMBER,
            "duration": _NUMBER,
        },
    },
}
SCHEMAS["UnappliedWebhook"] = {
    "type": "object", "required": ["id", "received_at", "video_id", "nonce", "error", "body"],
    "description": "A verified PixVerse webhook kept for the job that changed nothing: a "
                   "status code this version does not know, say. `error` says why.",
    "properties": {"id": {"type": "integer"}, "received_at": _NUMBER,
                   "video_id": _nullable({"type": "integer"}), "nonce": _nullable(_STRING),
                   "error": _STRING, "body": _STRING},
}
SCHEMAS["JobDetail"] = {"allOf": [_ref("Job"), {
    "type": "object", "required": ["transitions", "unapplied_webhooks", "tasks"],
    "properties": {"transitions": {"type": "array", "items": _ref("Transition")},
                   "unapplied_webhooks": {"type": "array", "items": _ref("UnappliedWebhook")},
                   "tasks": {"type": "array", "items": _ref("Task")}}}]}
SCHEMAS["CreatedJob"] = {"allOf": [_ref("Job"), {
    "type": "object", "required": ["warnings"],
    "properties": {"warnings": {
        "type": "array", "items": _STRING,
        "description": "Params pixhook does not know: sent to PixVerse as given, named here"}}}]}
SCHEMAS["TaskDetail"] = {"allOf": [_ref("Task"), {
    "type": "object", "required": ["runs"],
    "properties": {"runs": {"type": "array", "items": _ref("TaskRun")}}}]}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


_LIMIT = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}


def _bulk_retry(*, task_ids: bool) -> dict[str, Any]:
    """A bulk retry body: the tasks by id, or ``"all": true`` (one of them, not both)."""
    narrow = {"handler": _TEXT, "job_id": _TEXT}
    if task_ids:
        ids = {"type": "array", "maxItems": MAX_BULK_IDS, "items": {
            "type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1}}
        return {"type": "object", "required": ["task_ids"], "additionalProperties": False,
                "properties": {"task_ids": ids, "all": {"const": False}, **narrow}}
    return {"type": "object", "required": ["all"], "additionalProperties": False,
            "properties": {"all": {"const": True}, **narrow}}

SCHEMAS["Event"] = {
    "type": "object", "description": "A versioned, CloudEvents-style event (service/events.py)",
    "required": ["specversion", "dataversion", "id", "source", "type", "subject", "time",
                 "datacontenttype", "sequence", "data"],
    "properties": {
        "specversion": {"const": "1.0"}, "dataversion": {"type": "integer"},
        "id": _STRING, "source": _STRING,
        "type": {"enum": ["io.pixhook.job.transition", "io.pixhook.task.run"]},
        "subject": _STRING, "time": _STRING, "datacontenttype": {"const": "application/json"},
        "sequence": {"type": "integer", "minimum": 1},
        "data": {"type": "object", "required": ["job"], "properties": {
            "job": {"type": "object", "required": ["id", "kind", "state", "labels"],
                    "properties": {"id": _STRING, "kind": _STRING,
                                   "state": {"enum": _JOB_STATES}, "labels": _STRING_MAP}},
            "transition": {"type": "object"}, "task_run": {"type": "object"}}}}}

_EVENT_ID = {"type": "integer", "minimum": 0, "maximum": 2**63 - 1}
_EVENTS: dict[str, Any] = {
    "summary": "Events: transitions and task runs, live or paged", "operationId": "events",
    "description": (
        "With `Accept: text/event-stream`, server-sent events (`id:` the event's `sequence`, "
        "`event:` its type, `data:` the event), live, with `: heartbeat` comments; the stream "
        "starts after `Last-Event-ID`, else `after`, else at the end, and ends after a "
        "minute (reconnect with `Last-Event-ID`: nothing is missed or repeated). Otherwise "
        "one JSON page after `after` (default 0); ask again with `after=last_id`."),
    "parameters": [
        _query("after", _EVENT_ID, "Events after this sequence"),
        _query("job", _TEXT, "Only this job's events"),
        _query("kind", _TEXT, "Only events of jobs of this kind"),
        _query("state", {"enum": _JOB_STATES}, "Only events after which the job is in this state"),
        _query("type", {"enum": sorted(api_input.EVENT_TYPES)}, "Only this type of event"),
        _query("label", {"type": "string", "pattern": "^[^=\\u0000]+=[^\\u0000]*$"},
               "Only events of jobs with this label (`key=value`)"),
        _query("limit", _LIMIT, "Page size (JSON pages)"),
        {"name": api_input.LAST_EVENT_ID_HEADER, "in": "header", "required": False,
         "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
         "description": "Resume the stream after this event (wins over `after`)"},
    ],
    "responses": {"200": {"description": "A page of events, or the stream", "content": {
        "application/json": {"schema": {
            "type": "object", "required": ["events", "last_id"],
            "properties": {"events": {"type": "array", "items": _ref("Event")},
                           "last_id": {"type": "integer", "minimum": 0}}}},
        "text/event-stream": {"schema": _STRING}}},
        **_errors(401, 422)},
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "pixhook", "version": __version__,
             "description": "Submit PixVerse jobs and follow them without polling PixVerse."},
    "security": [{"bearer": []}],
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "PIXHOOK_API_TOKEN"}},
        "schemas": SCHEMAS,
    },
    "paths": {
        "/api/jobs": {
            "post": {
                "summary": "Submit a job", "operationId": "createJob",
                "description": (
                    "With `Idempotency-Key` (Stripe's semantics), the same request sent again "
                    "with the same key (by the same token, within PIXHOOK_IDEMPOTENCY_TTL "
                    "seconds) makes no second job: it gets the original response, marked "
                    "`Idempotent-Replayed: true`. The same key with another request is a 422 "
                    "(field `Idempotency-Key`). Requests are compared by their canonical JSON; "
                    "one that fails validation does not use up its key."),
                "parameters": [{
                    "name": api_input.IDEMPOTENCY_HEADER, "in": "header", "required": False,
                    "description": "A unique key per job request (a UUID, say); send it "
                                   "again when retrying that request.",
                    "schema": {"type": "string", "minLength": 1,
                               "maxLength": api_input.MAX_IDEMPOTENCY_KEY_CHARS,
                               # Printable ASCII; HTTP drops spaces at either end.
                               "pattern": "^[\\x21-\\x7e]([\\x20-\\x7e]*[\\x21-\\x7e])?$"}}],
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("NewJob")}}},
                "responses": {"201": {**_json(_ref("CreatedJob"), "The job, queued"), "headers": {
                    "Idempotent-Replayed": {
                        "description": "`true` when this is the original response to an "
                                       "earlier request with the same Idempotency-Key",
                        "schema": {"enum": ["true"]}}}},
                              **_errors(401, 408, 413, 422)},
            },
            "get": {
                "summary": "List jobs, newest first", "operationId": "listJobs",
                "parameters": [
                    _query("state", {"enum": _JOB_STATES}, "Only jobs in this state"),
                    _query("kind", _TEXT, "Only jobs of this kind"),
                    _query("limit", _LIMIT, "Page size"),
                    _query("cursor", _TEXT, "next_cursor of the page before"),
                    _query("q", _TEXT, "Search: a job id, trace id or video id, or text in "
                                       "a prompt (any param) or a label (`key=value` for "
                                       "one label); with state and kind, within them"),
                ],
                "responses": {"200": _json({
                    "type": "object", "required": ["jobs", "next_cursor"],
                    "properties": {"jobs": {"type": "array", "items": _ref("Job")},
                                   "next_cursor": _nullable(_STRING)}}, "A page of jobs"),
                    **_errors(401, 422)},
            },
        },
        "/api/jobs/{job_id}": {"get": {
            "summary": "A job with its transitions and tasks", "operationId": "getJob",
            "parameters": [_path("job_id", _STRING)],
            "responses": {"200": _json(_ref("JobDetail"), "The job"), **_errors(401, 404)},
        }},
        "/api/jobs/{job_id}/cancel": {"post": {
            "summary": "Cancel a job", "operationId": "cancelJob",
            "description": (
                "A job PixVerse has not accepted (queued, or submitting without a video id) "
                "becomes `rejected` and is never sent; if its create call is in flight, "
                "PixVerse's answer changes nothing. PixVerse has no cancel, so a job it "
                "accepted (generating) is still made and its credits are spent, but no "
                "handler or follow-up runs for it. `cancelled_at` is set either way; "
                "cancelling again answers the same."),
            "parameters": [_path("job_id", _STRING)],
            "responses": {"200": _json(_ref("Job"), "The job, cancelled"),
                          **_errors(401, 404),
                          "409": _json(_ref("Error"), "The job finished; nothing to cancel")},
        }},
        "/api/tasks": {"get": {
            "summary": "List handler tasks, oldest first (newest with order=newest)",
            "operationId": "listTasks",
            "parameters": [
                _query("state", {"enum": sorted(s.value for s in TaskState)}, "Task state"),
                _query("order", {"enum": ["oldest", "newest"]},
                       "oldest (the default) or newest first"),
                _query("job_id", _TEXT, "Only this job's tasks"),
                _query("handler", _TEXT, "Only this handler's tasks"),
                _query("limit", _LIMIT, "How many"),
            ],
            "responses": {"200": _json({
                "type": "object", "required": ["tasks"],
                "properties": {"tasks": {"type": "array", "items": _ref("Task")}}}, "Tasks"),
                **_errors(401, 422)},
        }},
        "/api/tasks/{task_id}": {"get": {
            "summary": "A task with its runs", "operationId": "getTask",
            "parameters": [_path("task_id", {"type": "integer"})],
            "responses": {"200": _json(_ref("TaskDetail"), "The task"), **_errors(401, 404)},
        }},
        "/api/tasks/{task_id}/retry": {"post": {
            "summary": "Run a dead task again", "operationId": "retryTask",
            "parameters": [_path("task_id", {"type": "integer"})],
            "responses": {"200": _json(_ref("Task"), "The task, pending again"),
                          **_errors(401, 404, 409)},
        }},
        "/api/tasks/retry": {"post": {
            "summary": "Run dead tasks again, together", "operationId": "retryDeadTasks",
            "description": (
                "Revives the dead tasks named by `task_ids`, or every dead task with "
                "`\"all\": true`; either narrowed by `handler` and `job_id`. Named tasks "
                "that are not dead are left alone. Each revived task runs again now with a "
                "fresh budget of attempts; its runs so far stay in its history."),
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "oneOf": [_bulk_retry(task_ids=True), _bulk_retry(task_ids=False)]}}}},
            "responses": {"200": _json({
                "type": "object", "required": ["retried", "tasks"],
                "properties": {"retried": {"type": "integer"},
                               "tasks": {"type": "array", "items": _ref("Task")}}},
                "The revived tasks, pending"), **_errors(401, 408, 413, 422)},
        }},
        "/api/tasks/{task_id}/replay": {"post": {
            "summary": "Run a finished task again (replay)", "operationId": "replayTask",
            "description": (
                "Re-runs one handler for one transition: a succeeded or dead task goes back "
                "to pending, runs now with a fresh budget of attempts, and its runs so far "
                "stay in its history. Replaying a `forward` task re-sends that event (same "
                "`webhook-id`)."),
            "parameters": [_path("task_id", {"type": "integer"})],
            "responses": {"200": _json(_ref("Task"), "The task, pending again"),
                          **_errors(401, 404),
                          "409": _json(_ref("Error"),
                                       "The task is pending or running: it runs anyway")},
        }},
        "/api/reconcile": {"post": {
            "summary": "Run one reconciler pass now", "operationId": "reconcile",
            "description": (
                "Polls PixVerse about the jobs whose webhook is overdue (after "
                "PIXHOOK_WEBHOOK_GRACE; every open job with PIXHOOK_POLL_MODE=always; none "
                "with off), as the worker's passes do, and answers how many status calls it "
                "made. Safe beside the worker: overdue jobs are claimed by one pass at a "
                "time. What `pixhook reconcile` calls."),
            "responses": {"200": _json({
                "type": "object", "required": ["polled"],
                "properties": {"polled": {"type": "integer", "minimum": 0}}},
                "The number of status calls made"), **_errors(401)},
        }},
        "/api/events": {"get": _EVENTS},
    },
}


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(DOCUMENT)


def routes() -> list[Route]:
    return [Route("/openapi.json", openapi_json, methods=["GET"])]
