"""``POST /account/billing/usage-detail`` (experimental: one source, REFERENCE.md §5.23).

Body ``{start_time?, end_time?, limit?, cursor?, credits_status?, creation_type?}``; answer
``{"items": [...], "next_cursor": "", "has_more": false}``. Each charge is a ``consume`` item
and each refund of a failed job a ``refund`` item, oldest first. The item's shape is
**invented** (PixVerse has not published it): ``{"id", "video_id" or "image_id",
"creation_type", "credits", "credits_status", "create_time"}``.

Times are ``YYYY-MM-DD HH:mm:ss`` UTC; one the simulator cannot read is 400013 (it needs them
to filter). ``limit`` is 1-100 (default 20, else 400017); ``cursor`` is the ``next_cursor`` of
the page before (an unknown one is 400017).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.pixverse import experimental
from service.pixverse.errors import InvalidRequest
from service.pixverse.validation import Problems
from service.simulator import records
from service.simulator.calls import Caller, Reject, api_endpoint, int_param, ok, read_json_object
from service.simulator.state import Job, SimulatorState

#: The usage API's ``creation_type`` for each pixhook kind that differs from it.
CREATION_TYPES: Final = {"template_video": "image_to_video", "image_template": "image_to_image",
                         "music_mv": "agent"}


def usage_items(state: SimulatorState, api_key: str) -> list[dict[str, Any]]:
    """Every charge and refund of ``api_key``, oldest first."""
    items: list[dict[str, Any]] = []
    for job in sorted((j for j in state.jobs.values() if j.api_key == api_key),
                      key=lambda j: (j.created_at, j.id)):
        items.append(_item(job, "consume", job.created_at))
        if job.refunded:
            items.append(_item(job, "refund", job.finished_at or job.modified_at))
    return items


def _item(job: Job, status: str, at: float) -> dict[str, Any]:
    id_key = "image_id" if job.result_kind == "image" else "video_id"
    return {"id": f"{job.id}-{status}", id_key: job.id,
            "creation_type": CREATION_TYPES.get(job.kind, job.kind), "credits": job.credits,
            "credits_status": status, "create_time": records.timestamp(at), "_at": at}


@api_endpoint
async def usage_detail(request: Request, state: SimulatorState, caller: Caller) -> Response:
    body = await read_json_object(request)
    try:
        experimental.UsageDetail.validate_payload(body, strict=state.config.strict_validation)
    except InvalidRequest as exc:
        raise Reject(exc.err_code, str(exc)) from exc
    problems = Problems()
    start, end = (experimental.parse_usage_time(problems, name, body.get(name))
                  for name in ("start_time", "end_time"))
    if problems:
        raise Reject(400013, str(problems.found[0]))
    limit = int_param(body, "limit", default=20, high=100)
    offset = _cursor(body.get("cursor"))
    wanted_status, wanted_types = body.get("credits_status"), body.get("creation_type")
    matching = [
        item for item in usage_items(state, caller.api_key)
        if (start is None or item["_at"] >= start.timestamp())
        and (end is None or item["_at"] <= end.timestamp())
        and (wanted_status is None or item["credits_status"] == wanted_status)
        and (not wanted_types or item["creation_type"] in wanted_types)
    ]
    page = [{k: v for k, v in item.items() if k != "_at"}
            for item in matching[offset:offset + limit]]
    more = offset + limit < len(matching)
    return JSONResponse(ok({"items": page, "next_cursor": str(offset + limit) if more else "",
                            "has_more": more}))


def _cursor(value: Any) -> int:
    if value is None or value == "":
        return 0
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise Reject(400017, f"cursor: {value!r} is not a next_cursor this API gave")


#: Route handlers by endpoint name (see ``service.pixverse.endpoints.ENDPOINTS``).
HANDLERS: Final[dict[str, Callable[[Request], Any]]] = {"usage_detail": usage_detail}

