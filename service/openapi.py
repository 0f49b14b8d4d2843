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

from service import __version__
from service.api import MAX_PAGE
from service.lifecycle import JobState, TransitionSource
from service.pixverse.models import REQUEST_TYPES
from service.store import TaskRunOutcome, TaskState


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    meaning = {401: "Missing or wrong bearer token", 404: "Not found",
               409: "The task is not dead", 422: "Invalid input; `field` names it"}
    return {str(code): _json(_ref("Error"), meaning[code]) for code in codes}


_NUMBER = {"type": "number"}
_STRING = {"type": "string"}
_STRING_MAP = {"type": "object", "additionalProperties": _STRING}
_JOB_STATES = sorted(state.value for state in JobState)

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"],
              "properties": {"error": _STRING, "field": _STRING}},
    "Step": {"type": "object", "required": ["kind"],
             "properties": {"kind": {"enum": sorted(REQUEST_TYPES)},
                            "params": {"type": "object"}}},
    "NewJob": {
        "type": "object", "required": ["kind"],
        "properties": {
            "kind": {"enum": sorted(REQUEST_TYPES)},
            "params": {"type": "object", "description": "The PixVerse request parameters."},
            "callback_url": {"type": "string", "format": "uri"},
            "then": {"type": "array", "items": _ref("Step")},
            "labels": _STRING_MAP,
        },
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
            "labels": _STRING_MAP, "callback_url": _nullable(_STRING),
            "then": {"type": "array", "items": {"type": "object"}},
            "parent_job_id": _nullable(_STRING), "attempts": {"type": "integer"},
            "last_error": _nullable(_STRING), "next_attempt_at": _nullable(_NUMBER),
            "next_poll_at": _nullable(_NUMBER), "created_at": _NUMBER, "updated_at": _NUMBER,
            "state_changed_at": _NUMBER, "last_event_at": _NUMBER,
            "media_path": _nullable(_STRING), "media_sha256": _nullable(_STRING),
            "media_size": _nullable({"type": "integer"}),
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
SCHEMAS["JobDetail"] = {"allOf": [_ref("Job"), {
    "type": "object", "required": ["transitions", "tasks"],
    "properties": {"transitions": {"type": "array", "items": _ref("Transition")},
                   "tasks": {"type": "array", "items": _ref("Task")}}}]}
SCHEMAS["TaskDetail"] = {"allOf": [_ref("Task"), {
    "type": "object", "required": ["runs"],
    "properties": {"runs": {"type": "array", "items": _ref("TaskRun")}}}]}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _path(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema}


_LIMIT = {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}

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
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": _ref("NewJob")}}},
                "responses": {"201": _json(_ref("Job"), "The job, queued"),
                              **_errors(401, 422)},
            },
            "get": {
                "summary": "List jobs, newest first", "operationId": "listJobs",
                "parameters": [
                    _query("state", {"enum": _JOB_STATES}, "Only jobs in this state"),
                    _query("kind", _STRING, "Only jobs of this kind"),
                    _query("limit", _LIMIT, "Page size"),
                    _query("cursor", _STRING, "next_cursor of the page before"),
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
        "/api/tasks": {"get": {
            "summary": "List handler tasks, oldest first", "operationId": "listTasks",
            "parameters": [
                _query("state", {"enum": sorted(s.value for s in TaskState)}, "Task state"),
                _query("job_id", _STRING, "Only this job's tasks"),
                _query("handler", _STRING, "Only this handler's tasks"),
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
    },
}


async def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(DOCUMENT)


def routes() -> list[Route]:
    return [Route("/openapi.json", openapi_json, methods=["GET"])]
