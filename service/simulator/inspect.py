"""The simulator's own surface under ``/_sim`` (JSON, no API key): look, force, configure.

* ``GET /_sim/jobs`` (filters ``api_key``, ``status``, ``kind``), ``GET /_sim/jobs/{id}``
  (with ``body``, the request exactly as received, fields the simulator ignores included,
  and ``payload``, the known fields it acted on)
* ``POST /_sim/jobs/{id}/outcome`` ``{"status": 1|7|8|6, "size_bytes": n, "at": "now"|"due"}``:
  ``now`` (default) ends the job at once and fires its webhook; ``due`` only decides the outcome
  it reaches on schedule. 1/7/8 need a job still in status 5 (else 409); 6 (deleted) works on
  any job and is published too.
* ``POST /_sim/jobs/{id}/webhook`` ``{"status": n, "fields": {...}}`` (both optional): push one
  more webhook for the job as it is, with that status (any integer, say 9) and extra flat
  fields over its own; the job does not change.
* ``GET /_sim/stats``: per key counters (see :class:`service.simulator.state.KeyStats`), plus
  API chaos fault counts.
* ``GET /_sim/deliveries?video_id=``: the webhook dispatcher's records.
* ``GET /_sim/accounts``, ``PUT /_sim/accounts/{key}`` (``webhook_url``, ``webhook_secret``,
  ``credits`` (= ``credit_monthly``), ``credit_monthly``, ``credit_package``,
  ``concurrency_limit``; creates the key if new).
* ``GET /_sim/chaos``, ``PUT /_sim/chaos``: replace the chaos settings (omitted fields take
  their defaults; the API fault sequence restarts from the new seed).
* ``GET /_sim/uploads`` (filter ``api_key``), ``POST /_sim/reset`` (forget jobs, uploads,
  counters, the trace-id cache; restore starting balances; webhook deliveries are the
  dispatcher's and stay).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.pixverse.errors import MalformedPayloadError
from service.pixverse.vocab import VideoStatus
from service.simulator import records
from service.simulator.api_chaos import ChaosDice
from service.simulator.calls import state_of
from service.simulator.config import Account, ChaosConfig

FORCEABLE: Final = frozenset({1, 6, 7, 8})
_ACCOUNT_FIELDS: Final = {
    "webhook_url": (str, type(None)), "webhook_secret": (str,), "credit_monthly": (int,),
    "credit_package": (int,), "concurrency_limit": (int,),
}


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def _json(request: Request) -> dict[str, Any] | JSONResponse:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        return _problem(400, "body must be JSON")
    if not isinstance(body, dict):
        return _problem(400, "body must be a JSON object")
    return body


async def list_jobs(request: Request) -> Response:
    state = state_of(request)
    state.advance()
    q = request.query_params
    jobs = [
        records.job_view(job) for job in state.jobs.values()
        if ("api_key" not in q or job.api_key == q["api_key"])
        and ("status" not in q or str(job.status) == q["status"])
        and ("kind" not in q or job.kind == q["kind"])
    ]
    return JSONResponse({"total": len(jobs), "jobs": jobs})


def _job(request: Request) -> Any:
    state = state_of(request)
    state.advance()
    try:
        return state.jobs.get(int(request.path_params["job_id"]))
    except ValueError:
        return None


async def get_job(request: Request) -> Response:
    job = _job(request)
    if job is None:
        return _problem(404, "no such job")
    return JSONResponse(records.job_view(job, detail=True))


async def _job_and_body(request: Request) -> tuple[Any, dict[str, Any]] | JSONResponse:
    """The path's job and the JSON body, or the problem answer (404, 400)."""
    job = _job(request)
    if job is None:
        return _problem(404, "no such job")
    body = await _json(request)
    if isinstance(body, JSONResponse):
        return body
    return job, body


async def force_outcome(request: Request) -> Response:
    found = await _job_and_body(request)
    if isinstance(found, JSONResponse):
        return found
    job, body = found
    status = body.get("status")
    size = body.get("size_bytes")
    at = body.get("at", "now")
    if status not in FORCEABLE or isinstance(status, bool):
        return _problem(400, f"status must be one of {sorted(FORCEABLE)}")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 1):
        return _problem(400, "size_bytes must be a positive integer")
    if at not in ("now", "due"):
        return _problem(400, 'at must be "now" or "due"')
    if status != VideoStatus.DELETED and job.status != VideoStatus.GENERATING:
        return _problem(409, f"job already ended with status {job.status}")
    state_of(request).force_outcome(job, status, size_bytes=size, now=at == "now")
    return JSONResponse(records.job_view(job, detail=True))


async def push_webhook(request: Request) -> Response:
    found = await _job_and_body(request)
    if isinstance(found, JSONResponse):
        return found
    job, body = found
    status, fields = body.get("status"), body.get("fields", {})
    if status is not None and (not isinstance(status, int) or isinstance(status, bool)):
        return _problem(400, "status must be an integer")
    if not isinstance(fields, dict):
        return _problem(400, "fields must be an object")
    try:
        state_of(request).push_webhook(job, status=status, fields=fields)
    except MalformedPayloadError as exc:
        return _problem(400, str(exc))
    return JSONResponse(records.job_view(job, detail=True))


async def stats(request: Request) -> Response:
    state = state_of(request)
    state.advance()
    dice: ChaosDice = request.app.state.chaos_dice
    return JSONResponse({"keys": state.stats_snapshot(), "jobs_total": len(state.jobs),
                         "api_faults": dict(dice.faults)})


async def deliveries(request: Request) -> Response:
    video_id = request.query_params.get("video_id")
    found = state_of(request).dispatcher.deliveries(video_id)
    return JSONResponse({"total": len(found), "deliveries": found})


def _account_view(key: str, account: Account) -> dict[str, Any]:
    return {"api_key": key, **dataclasses.asdict(account)}


async def list_accounts(request: Request) -> Response:
    accounts = state_of(request).config.accounts
    return JSONResponse({"accounts": [_account_view(k, a) for k, a in accounts.items()]})


async def put_account(request: Request) -> Response:
    body = await _json(request)
    if isinstance(body, JSONResponse):
        return body
    if "credits" in body:
        body.setdefault("credit_monthly", body.pop("credits"))
        body.pop("credits", None)
    unknown = sorted(set(body) - set(_ACCOUNT_FIELDS))
    if unknown:
        return _problem(400, f"unknown fields {unknown}; known: {sorted(_ACCOUNT_FIELDS)}")
    for name, value in body.items():
        if not isinstance(value, _ACCOUNT_FIELDS[name]) or isinstance(value, bool):
            return _problem(400, f"{name} has the wrong type")
    accounts = state_of(request).config.accounts
    key = request.path_params["key"]
    account = accounts.setdefault(key, Account())
    for name, value in body.items():
        setattr(account, name, value)
    return JSONResponse(_account_view(key, account))


async def get_chaos(request: Request) -> Response:
    return JSONResponse(dataclasses.asdict(state_of(request).config.chaos))


async def put_chaos(request: Request) -> Response:
    body = await _json(request)
    if isinstance(body, JSONResponse):
        return body
    if isinstance(body.get("api_chaos_paths"), list):
        body["api_chaos_paths"] = tuple(body["api_chaos_paths"])
    try:
        fresh = ChaosConfig(**body)
    except TypeError as exc:
        return _problem(400, str(exc))
    # Updated in place: the webhook dispatcher and the API chaos dice hold this object.
    chaos = state_of(request).config.chaos
    for field in dataclasses.fields(ChaosConfig):
        setattr(chaos, field.name, getattr(fresh, field.name))
    request.app.state.chaos_dice.reseed()
    return JSONResponse(dataclasses.asdict(chaos))


async def list_uploads(request: Request) -> Response:
    key = request.query_params.get("api_key")
    uploads = [u for u in state_of(request).uploads.values() if key is None or u.api_key == key]
    return JSONResponse({"uploads": [records.upload_view(u) for u in uploads]})


async def reset(request: Request) -> Response:
    state_of(request).reset()
    return JSONResponse({"reset": True})


routes: Final = [
    Route("/jobs", list_jobs, methods=["GET"]),
    Route("/jobs/{job_id}", get_job, methods=["GET"]),
    Route("/jobs/{job_id}/outcome", force_outcome, methods=["POST"]),
    Route("/jobs/{job_id}/webhook", push_webhook, methods=["POST"]),
    Route("/stats", stats, methods=["GET"]),
    Route("/deliveries", deliveries, methods=["GET"]),
    Route("/accounts", list_accounts, methods=["GET"]),
    Route("/accounts/{key}", put_account, methods=["PUT"]),
    Route("/chaos", get_chaos, methods=["GET"]),
    Route("/chaos", put_chaos, methods=["PUT"]),
    Route("/uploads", list_uploads, methods=["GET"]),
    Route("/reset", reset, methods=["POST"]),
]
