"""Audio verification and custom TTS voices (experimental: one source each, REFERENCE.md §14).

* ``POST /audio/verification`` ``{"audio_media_id"}`` -> ``{}``: clears an uploaded audio file
  for the music-MV agent. Unknown media 500008, not audio 400017, and a ``blocked_words`` word
  in its file name or URL 500063 (PixVerse's moderation body, as the kit recorded it).
* ``POST /video/tts_speaker`` ``{"name", "audio_media_id"}`` -> ``{"speaker_id", "name"}``: a
  custom voice for this key, usable as ``lip_sync_tts_speaker_id``. Unknown media 500008, a
  blocked word in the name 500063.
* ``DELETE /video/tts_speaker/{speaker_id}`` -> ``{}``: another key's or an unknown voice
  500008; a system voice 400017.
* ``GET /video/tts_speaker?page_num=&page_size=&speaker_type=system|custom|all`` -> ``{"total",
  "data": [{"speaker_id", "name", "speaker_type"}]}`` (the item's ``speaker_type`` is ours).

Answers are cached by trace id like every POST here, so a retried create makes one voice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service.pixverse import experimental, vocab
from service.pixverse.errors import InvalidRequest
from service.pixverse.request import PixVerseRequest
from service.simulator import catalog
from service.simulator.calls import (
    Caller,
    Reject,
    api_endpoint,
    int_param,
    ok,
    read_json_object,
)
from service.simulator.references import uploaded_media
from service.simulator.state import SimulatorState, Upload


async def _body(request: Request, state: SimulatorState,
                request_type: type[PixVerseRequest]) -> dict[str, Any]:
    body = await read_json_object(request)
    try:
        request_type.validate_payload(body, strict=state.config.strict_validation)
    except InvalidRequest as exc:
        raise Reject(exc.err_code, str(exc)) from exc
    known = request_type.field_types()
    return {k: v for k, v in request_type.normalise(body).items() if k in known}


def _blocked(state: SimulatorState, *texts: str) -> str | None:
    text = " ".join(texts).lower()
    return next((w for w in state.config.blocked_words if w.lower() in text), None)


def _remembered(state: SimulatorState, caller: Caller, resp: Any) -> JSONResponse:
    answer = ok(resp)
    state.remember_answer(caller.api_key, caller.trace_id, answer)
    return JSONResponse(answer)


@api_endpoint
async def verify_audio(request: Request, state: SimulatorState, caller: Caller) -> Response:
    if (cached := state.cached_answer(caller.api_key, caller.trace_id)) is not None:
        return JSONResponse(cached)
    payload = await _body(request, state, experimental.AudioVerification)
    upload = uploaded_media(state, caller.api_key, "audio_media_id", payload["audio_media_id"],
                            "audio")
    if (word := _blocked(state, upload.filename, upload.source_url or "")) is not None:
        raise Reject(500063, f"the audio's name contains a blocked word ({word!r})")
    state.verified_audio.add(upload.id)
    return _remembered(state, caller, {})


@api_endpoint
async def create_speaker(request: Request, state: SimulatorState, caller: Caller) -> Response:
    if (cached := state.cached_answer(caller.api_key, caller.trace_id)) is not None:
        return JSONResponse(cached)
    payload = await _body(request, state, experimental.TtsSpeakerCreate)
    sample: Upload = uploaded_media(state, caller.api_key, "audio_media_id",
                                    payload["audio_media_id"], "audio")
    name = str(payload["name"])
    if (word := _blocked(state, name, sample.filename)) is not None:
        raise Reject(500063, f"the voice's name contains a blocked word ({word!r})")
    speaker_id = str(state.new_id("speaker"))
    state.custom_speakers[speaker_id] = (caller.api_key, name)
    return _remembered(state, caller, {"speaker_id": speaker_id, "name": name})


@api_endpoint
async def delete_speaker(request: Request, state: SimulatorState, caller: Caller) -> Response:
    if (cached := state.cached_answer(caller.api_key, caller.trace_id)) is not None:
        return JSONResponse(cached)
    speaker_id = request.path_params["speaker_id"]
    if speaker_id in catalog.TTS_SPEAKER_IDS:
        raise Reject(400017, f"speaker_id: {speaker_id!r} is a system voice")
    owner = state.custom_speakers.get(speaker_id)
    if owner is None or owner[0] != caller.api_key:
        raise Reject(500008, f"speaker_id: no custom voice {speaker_id!r}")
    del state.custom_speakers[speaker_id]
    return _remembered(state, caller, {})


@api_endpoint
async def list_speakers(request: Request, state: SimulatorState, caller: Caller) -> Response:
    query = request.query_params
    number = int_param(query, "page_num", default=1)
    size = int_param(query, "page_size", default=20, high=100)
    speaker_type = query.get("speaker_type") or "all"
    if speaker_type not in vocab.TTS_SPEAKER_TYPES:
        raise Reject(400017, f"speaker_type: {speaker_type!r} is not one of "
                             f"{', '.join(vocab.TTS_SPEAKER_TYPES)}")
    items: list[dict[str, Any]] = []
    if speaker_type in ("system", "all"):
        items += [{**s, "speaker_type": "system"} for s in catalog.TTS_SPEAKERS]
    if speaker_type in ("custom", "all"):
        items += [{"speaker_id": sid, "name": name, "speaker_type": "custom"}
                  for sid, (key, name) in state.custom_speakers.items() if key == caller.api_key]
    return JSONResponse(ok({"total": len(items),
                            "data": catalog.page(tuple(items), number, size)}))


#: Route handlers by endpoint name (see ``service.pixverse.endpoints.ENDPOINTS``).
HANDLERS: Final[dict[str, Callable[[Request], Any]]] = {
    "audio_verification": verify_audio,
    "create_tts_speaker": create_speaker,
    "delete_tts_speaker": delete_speaker,
    "tts_speaker_list": list_speakers,
}
