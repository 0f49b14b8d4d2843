"""The PixVerse API under ``/openapi/v2``: generation, results, lists and the balance.

A generation call goes: authenticate -> trace-id cache (a repeat of (API-KEY, Ai-trace-id)
returns the first successful answer verbatim, whatever the body) -> JSON object (400013) ->
the endpoint's request type (400011/400013/400017/400018/400019) -> referenced ids ->
pre-submit moderation (500063) -> concurrency (500044) -> price and charge (500090) -> job.
Only successes are cached, so a retry after 500044/500090 with the same trace id is tried
afresh.

Validation is :mod:`service.pixverse.validation`'s, as PixVerse is known to accept
(``config.strict_validation`` adds the older rules); fields the simulator does not know are
ignored, as PixVerse ignores them, and the body is kept as received for ``/_sim/jobs/{id}``.
Referenced ids are resolved by :mod:`service.simulator.references`; a music video's audio must
have passed ``/audio/verification`` first (701020). Uploads live in
:mod:`service.simulator.uploads`; audio verification and custom voices in
:mod:`service.simulator.voices`; usage detail in :mod:`service.simulator.usage`.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.pixverse.endpoints import ENDPOINTS
from service.pixverse.errors import InvalidRequest
from service.pixverse.models import REQUEST_TYPES
from service.pixverse.vocab import LEGACY_ASPECT_RATIOS
from service.simulator import catalog, media, pricing, records, usage, voices
from service.simulator.calls import (
    Caller,
    Reject,
    api_endpoint,
    int_param,
    ok,
    read_json_object,
)
from service.simulator.references import Sources, as_id, check_references
from service.simulator.state import Job, SimulatorState, texts_of

#: Create responses that echo the price, and under which key (REFERENCE.md 3 and 5).
CREDIT_ECHO: Final = {
    "multi_transition": "credits", "restyle": "credits", "swap": "credits", "mimic": "credit",
}
#: Endpoints whose result keeps the source video's soundtrack.
_KEEPS_SOURCE_AUDIO: Final = frozenset({"restyle", "swap", "modify", "upscale"})
#: Endpoints whose result speaks or sings: it has audio.
_MAKES_AUDIO: Final = frozenset({"lip_sync", "sound_effect", "avatar", "music_mv"})
_QUALITY = re.compile(r"^\d{3,4}p$")


# -- generation ------------------------------------------------------------------------------


def generation_endpoint(name: str) -> Callable[[Request], Any]:
    """The route handler for endpoint ``name`` (``image_to_video`` also serves templates)."""

    async def handle(request: Request, state: SimulatorState, caller: Caller) -> Response:
        stats = state.key_stats(caller.api_key)
        stats.submissions += 1
        if (cached := state.cached_answer(caller.api_key, caller.trace_id)) is not None:
            stats.cache_hits += 1
            return JSONResponse(cached)
        body = await read_json_object(request)
        # Checked again: a twin request may have finished while this body was read.
        if (cached := state.cached_answer(caller.api_key, caller.trace_id)) is not None:
            stats.cache_hits += 1
            return JSONResponse(cached)
        kind = name
        if name == "image_to_video" and body.get("template_id") is not None:
            kind = "template_video"
        request_type = REQUEST_TYPES[kind]
        try:
            request_type.validate_payload(body, strict=state.config.strict_validation)
        except InvalidRequest as exc:
            raise Reject(exc.err_code, str(exc)) from exc
        # The known fields only: the rest PixVerse ignores (the job keeps the body as sent).
        payload = {k: v for k, v in request_type.normalise(body).items()
                   if k in request_type.field_types()}
        sources = check_references(state, caller.api_key, payload)
        if kind == "music_mv" and as_id(payload["audio_media_id"]) not in state.verified_audio:
            raise Reject(701020, "call /audio/verification with this audio_media_id first")
        texts = texts_of(payload)
        blocked = _first_word(texts, state.config.blocked_words)
        if blocked is not None:
            raise Reject(500063, f"the text contains a blocked word ({blocked!r})")
        makes_job = ENDPOINTS[kind].is_generation
        account = state.config.accounts[caller.api_key]
        if makes_job and state.running_count(caller.api_key) >= account.concurrency_limit:
            raise Reject(500044, f"{account.concurrency_limit} generations already running")
        quote = pricing.PriceQuote(
            kind=kind, payload=payload, source_seconds=sources.seconds,
            audio_bytes=sources.audio_upload.size if sources.audio_upload else None,
        )
        credits = int(state.price_function(quote))
        charged = state.charge(caller.api_key, credits)
        if charged is None:
            raise Reject(500090, f"the job costs {credits} credits")
        if not makes_job:  # swap mask: synchronous
            answer = ok(swap_mask_result(state, caller, payload, credits))
        else:
            job = new_job(state, caller, kind, payload, sources, credits, charged,
                          texts=texts, body=body)
            answer = ok(create_result(job, always_credits=state.config.credits_on_every_create))
        state.remember_answer(caller.api_key, caller.trace_id, answer)
        return JSONResponse(answer)

    handle.__name__ = f"generate_{name}"
    return api_endpoint(handle)


def new_job(state: SimulatorState, caller: Caller, kind: str, payload: dict[str, Any],
            sources: Sources, credits: int, charged: tuple[int, int], *,
            texts: list[str], body: Mapping[str, Any] | None = None) -> Job:
    """Build and register the job for an accepted, charged submission."""
    source = sources.video_job
    duration = payload.get("duration")
    if kind == "multi_transition":
        duration = sum(int(f.get("duration") or 0) for f in payload["multi_transition"])
    elif kind == "template_video":
        duration = 5
    elif not isinstance(duration, int) or duration <= 0:
        duration = sources.seconds  # from the source, or fusion omni's 0: "PixVerse picks"
    has_audio = (
        kind in _MAKES_AUDIO
        or any(payload.get(f) is True for f in ("generate_audio_switch", "sound_effect_switch",
                                                  "lip_sync_tts_switch"))
        or (kind in _KEEPS_SOURCE_AUDIO and source is not None and source.has_audio)
    )
    quality = payload.get("quality")
    if not (isinstance(quality, str) and _QUALITY.match(quality)):
        quality = source.quality if source else "540p"
    callback = (body or {}).get("callback_url")
    if not (state.config.honour_request_callback_url and isinstance(callback, str)
            and callback.startswith(("http://", "https://"))):
        callback = None
    now = state.clock()
    seed = payload.get("seed")
    return_kind: Literal["video", "image"] = "image" if kind == "image_template" else "video"
    job = Job(
        id=state.new_id(return_kind),
        kind=kind,
        result_kind=return_kind,
        api_key=caller.api_key,
        trace_id=caller.trace_id,
        payload=payload,
        base_url=caller.base_url,
        credits=credits,
        charged_monthly=charged[0],
        charged_package=charged[1],
        created_at=state.wall_clock(),
        due_at=now + state.config.generation_seconds,
        created_mono=now,
        planned_status=state.plan_outcome(texts),
        duration=duration,
        quality=quality,
        aspect_ratio=str(payload.get("aspect_ratio")
                         or (source.aspect_ratio if source else LEGACY_ASPECT_RATIOS[0])),
        has_audio=has_audio,
        seed=seed if isinstance(seed, int) else state.next_seed(),
        body=dict(body or payload),
        callback_url=callback,
    )
    state.add_job(job)
    return job


def create_result(job: Job, *, always_credits: bool = False) -> dict[str, Any]:
    """The ``Resp`` of a create call: the price where the docs show it, or everywhere with
    ``always_credits``."""
    if job.result_kind == "image":
        return {"image_id": job.id, "credits": job.credits}
    resp: dict[str, Any] = {"video_id": job.id}
    echo = CREDIT_ECHO.get(job.kind, "credits" if always_credits else None)
    if echo is not None:
        resp[echo] = job.credits
    if always_credits:
        resp["credits"] = job.credits
    return resp


def swap_mask_result(state: SimulatorState, caller: Caller, payload: Mapping[str, Any],
                     credits: int) -> dict[str, Any]:
    """``/video/mask/selection`` answers at once with the keyframe and its masks."""
    keyframe = int(payload.get("keyframe_id") or 1)
    masks = []
    for name in ("person", "background"):
        mask_id = str(state.new_id("mask"))
        state.masks[mask_id] = caller.api_key
        masks.append({"mask_id": mask_id, "mask_name": name,
                      "mask_url": media.frame_url(caller.base_url, f"mask-{mask_id}")})
    return {
        "keyframe_id": keyframe,
        "keyframe_url": media.frame_url(caller.base_url, f"keyframe-{keyframe}"),
        "credits": credits,
        "mask_info": masks,
    }


def _first_word(texts: list[str], words: tuple[str, ...]) -> str | None:
    text = " ".join(texts).lower()
    return next((w for w in words if w.lower() in text), None)


# -- results -----------------------------------------------------------------------------------


def _job_for(state: SimulatorState, caller: Caller, raw_id: str, result_kind: str) -> Job:
    stats = state.key_stats(caller.api_key)
    stats.status_calls += 1
    try:
        job_id = int(raw_id)
    except ValueError as exc:
        raise Reject(400013, f"id: {raw_id!r} must be an integer") from exc
    job = state.jobs.get(job_id)
    if job is None or job.api_key != caller.api_key or job.result_kind != result_kind:
        raise Reject(500008, f"no {result_kind} {job_id}")
    job.status_calls += 1
    return job


@api_endpoint
async def video_result(request: Request, state: SimulatorState, caller: Caller) -> Response:
    job = _job_for(state, caller, request.path_params["id"], "video")
    long_edge = state.config.quality_edge == "long"
    return JSONResponse(ok(records.video_record(job, long_edge=long_edge)))


@api_endpoint
async def image_result(request: Request, state: SimulatorState, caller: Caller) -> Response:
    job = _job_for(state, caller, request.path_params["image_id"], "image")
    return JSONResponse(ok(records.image_record(job)))


# -- lists and balance -------------------------------------------------------------------------


@api_endpoint
async def tts_list(request: Request, state: SimulatorState, caller: Caller) -> Response:
    number = int_param(request.query_params, "page_num")
    size = int_param(request.query_params, "page_size", high=100)
    items = catalog.page(catalog.TTS_SPEAKERS, number, size)
    return JSONResponse(ok({"total": len(catalog.TTS_SPEAKERS), "data": items}))


@api_endpoint
async def restyle_list(request: Request, state: SimulatorState, caller: Caller) -> Response:
    # The official spec shows page_num/page_size as a JSON body on a GET; clients send query
    # parameters. Both are accepted, the query first.
    params: dict[str, Any] = {}
    if await request.body():
        params.update(await read_json_object(request))
    params.update(request.query_params)
    number = int_param(params, "page_num")
    size = int_param(params, "page_size", high=100)
    items = catalog.page(catalog.RESTYLES, number, size)
    for item in items:  # INVENTED shape (REFERENCE.md 5.10): cover_url added here
        item["cover_url"] = media.frame_url(caller.base_url, f"restyle-{item['restyle_id']}")
    return JSONResponse(ok({"total": len(catalog.RESTYLES), "data": items}))


@api_endpoint
async def effects_templates(request: Request, state: SimulatorState, caller: Caller) -> Response:
    params = request.query_params
    kind = int_param(params, "type", default=1, high=2)
    number = int_param(params, "page", default=1)
    size = int_param(params, "pageSize", default=10, high=100)
    matching = tuple(t for t in catalog.EFFECT_TEMPLATES if t["type"] == kind)
    items = catalog.page(matching, number, size)
    for item in items:  # INVENTED shape (REFERENCE.md 12.8)
        item["cover_url"] = media.frame_url(caller.base_url, f"template-{item['template_id']}")
    return JSONResponse(ok({"total": len(matching), "effect_items": items}))


@api_endpoint
async def balance(request: Request, state: SimulatorState, caller: Caller) -> Response:
    account = state.config.accounts[caller.api_key]
    return JSONResponse(ok({
        "account_id": account_id(caller.api_key),
        "credit_monthly": account.credit_monthly,
        "credit_package": account.credit_package,
    }))


def account_id(api_key: str) -> int:
    """A stable account id per key (PixVerse's example: 123452341)."""
    return 100_000_000 + zlib.crc32(api_key.encode()) % 900_000_000


def routes() -> list[Route]:
    """Every ENDPOINTS row except the uploads (see :mod:`service.simulator.uploads`)."""
    special: dict[str, Callable[[Request], Any]] = {
        **voices.HANDLERS,
        **usage.HANDLERS,
        "lip_sync_tts_list": tts_list,
        "restyle_effect_list": restyle_list,
        "effects_template_list": effects_templates,
        "account_balance": balance,
        "video_result": video_result,
        "image_result": image_result,
    }
    result = []
    seen: set[tuple[str, str]] = set()
    for name, endpoint in ENDPOINTS.items():
        if endpoint.result_kind == "upload" or (endpoint.method, endpoint.path) in seen:
            continue  # template_video shares image_to_video's route
        seen.add((endpoint.method, endpoint.path))
        handler = special.get(name) or generation_endpoint(name)
        result.append(Route(endpoint.path, handler, methods=[endpoint.method]))
    return result
