"""The async PixVerse client: one method per endpoint, on httpx.

    async with PixVerseClient(api_key, base_url=...) as pixverse:
        submission = await pixverse.text_to_video(
            TextToVideo(prompt="a lantern over a lake", model="v6", duration=5,
                        quality="540p", aspect_ratio="21:9"))
        result = await pixverse.video_result(submission.video_id)

Every request carries ``API-KEY`` and ``Ai-trace-id``. Generation calls take the trace id from
the caller (pixhook persists it before the call so a retry reuses it); otherwise a fresh UUID4
is made and returned on the :class:`Submission`. The base URL may be the host alone
(``https://app-api.pixverse.ai``, as PixVerse's own client reads ``PIXVERSE_BASE_URL``) or end
in ``/openapi/v2``.

The experimental endpoints (one weak source each, see :mod:`service.pixverse.experimental`)
have methods too: :meth:`avatar`, :meth:`agent`, :meth:`music_mv`, :meth:`verify_audio`,
:meth:`tts_speakers_by_type`, :meth:`create_tts_speaker`, :meth:`delete_tts_speaker` and
:meth:`usage_detail`.

Retries: a POST is **never** re-sent by the client, because PixVerse deduplicates on the trace
id and only the caller knows whether it persisted one. A failure raises an exception whose
``retryable`` says whether the same call (same trace id) may be tried again. GET calls are
safe to repeat and are retried a few times on transport errors, 5xx and 429.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Mapping
from typing import Any, Final, Self, TypeVar

import httpx

from service.pixverse import envelope, experimental, models, results, vocab
from service.pixverse.endpoints import ENDPOINTS
from service.pixverse.errors import (
    InvalidRequest,
    PixVerseError,
    RateLimitedError,
    TransportError,
)
from service.pixverse.uploads import Upload, UploadPart

#: Connect fast, but allow PixVerse time to answer a generation call.
DEFAULT_TIMEOUT: Final = httpx.Timeout(30.0, connect=5.0)
#: Uploads of up to 50 MB need longer writes.
UPLOAD_TIMEOUT: Final = httpx.Timeout(120.0, connect=5.0)
#: How many times a GET is retried after a retryable failure.
DEFAULT_GET_RETRIES: Final = 2
GET_BACKOFF_SECONDS: Final = 0.5

TRACE_HEADER: Final = "Ai-trace-id"
KEY_HEADER: Final = "API-KEY"

R = TypeVar("R", bound=models.PixVerseRequest)


def new_trace_id() -> str:
    return str(uuid.uuid4())


def api_base_url(url: str) -> str:
    """The API's base: a URL with no path (the host alone, as PixVerse's own client takes it)
    gets ``/openapi/v2`` appended; any other is used as given, without a trailing slash."""
    url = url.strip().rstrip("/")
    if httpx.URL(url).path in ("", "/"):
        return url + vocab.API_PATH_PREFIX
    return url


class PixVerseClient:
    """Async client for PixVerse's platform API (``/openapi/v2``).

    :param api_key: the key from platform.pixverse.ai (or the simulator's).
    :param base_url: ``https://app-api.pixverse.ai/openapi/v2`` by default; the host alone
        (``https://app-api.pixverse.ai``) means the same.
    :param timeout: per-request timeout for JSON calls; uploads use ``upload_timeout``.
    :param transport: an httpx transport, for tests.
    :param get_retries: retries for GET calls on transport errors, 5xx and 429.
    """

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = vocab.API_BASE_URL,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        upload_timeout: httpx.Timeout | float = UPLOAD_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
        get_retries: int = DEFAULT_GET_RETRIES,
    ) -> None:
        if not api_key:
            raise InvalidRequest("api_key", "is empty; set PIXVERSE_API_KEY", err_code=10002)
        self._upload_timeout = upload_timeout
        self._get_retries = get_retries
        self._http = httpx.AsyncClient(
            base_url=api_base_url(base_url),
            headers={KEY_HEADER: api_key, "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **kwargs: Any) -> PixVerseClient:
        """Build from ``PIXVERSE_API_KEY`` and ``PIXVERSE_BASE_URL``."""
        env = os.environ if environ is None else environ
        base_url = env.get("PIXVERSE_BASE_URL") or vocab.API_BASE_URL
        return cls(env.get("PIXVERSE_API_KEY", ""), base_url=base_url, **kwargs)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- generation ----------------------------------------------------------------------------

    async def submit(
        self, request: models.PixVerseRequest, *, trace_id: str | None = None
    ) -> results.Submission:
        """Send any generation request to its endpoint (the generic form of the methods below)."""
        endpoint = ENDPOINTS[request.endpoint]
        if not endpoint.is_generation:
            raise InvalidRequest("request", f"{request.endpoint} does not start a job")
        trace_id = trace_id or new_trace_id()
        resp = await self._send("POST", endpoint.path, trace_id, json=request.to_payload())
        return results.Submission.from_resp(resp or {}, trace_id)

    async def text_to_video(self, request: models.TextToVideo, *,
                            trace_id: str | None = None) -> results.Submission:
        return await self.submit(_expect(request, models.TextToVideo), trace_id=trace_id)

    async def image_to_video(self, request: models.ImageToVideo, *,
                             trace_id: str | None = None) -> results.Submission:
        return await self.submit(_expect(request, models.ImageToVideo), trace_id=trace_id)

    async def template_video(self, request: models.TemplateVideo, *,
                             trace_id: str | None = None) -> results.Submission:
        return await self.submit(_expect(request, models.TemplateVideo), trace_id=trace_id)

    async def transition(self, request: models.Transition, *,
                         trace_id: str | None = None) -> results.Submission:
        return await self.submit(_expect(request, models.Transition), trace_id=trace_id)

    async def lip_sync(self, request: models.LipSync, *,
                       trace_id: str | None = None) -> results.Submission:
        return await self.submit(_expect(request, models.LipSync), trace_id=trace_id)

    async def fusion(self, request: models.Fusion, *,
                     trace_id: str | None = None) -> results.Submission:
        return await self.submit(_expect(request, models.Fusion), trace_id=trace_id)

    async def multi_transition(self, request: models.MultiTransition, *,
                               trace_id: str | None = None) -> results.Submission:
        return await self.submit(_expect(request, models.MultiTransition), trace_id=trace_id)

    async def restyle(self, request: models.Restyle, *,
                      trace_id: str | None = None) -> results.Submission:
        return await self.submit(_expect(request, models.Restyle), trace_id=trace_id)

    async def swap(self, request: models.Swap, *,
                   trace_id: str | None = None) -> results.Submission:
        return await self.submit(_expect(request, models.Swap), trace_id=trace_id)

    async def sound_effect(self, request: models.SoundEffect, *,
                           trace_id: str | None = None) -> results.Submission:
        return await self.submit(_expect(request, models.SoundEffect), trace_id=trace_id)

    async def extend(self, request: models.Extend, *,
                     trace_id: str | None = None) -> results.Submission:
        return await self.submit(_expect(request, models.Extend), trace_id=trace_id)

    async def mimic(self, request: models.Mimic, *,
                    trace_id: str | None = None) -> results.Submission:
        return await self.submit(_expect(request, models.Mimic), trace_id=trace_id)

    async def modify(self, request: models.Modify, *,
                     trace_id: str | None = None) -> results.Submission:
        return await self.submit(_expect(request, models.Modify), trace_id=trace_id)

    async def upscale(self, request: models.Upscale, *,
                      trace_id: str | None = None) -> results.Submission:
        return await self.submit(_expect(request, models.Upscale), trace_id=trace_id)

    async def image_template(self, request: models.ImageTemplate, *,
                             trace_id: str | None = None) -> results.Submission:
        return await self.submit(_expect(request, models.ImageTemplate), trace_id=trace_id)

    async def avatar(self, request: experimental.Avatar, *,
                     trace_id: str | None = None) -> results.Submission:
        """A talking avatar (experimental: one source)."""
        return await self.submit(_expect(request, experimental.Avatar), trace_id=trace_id)

    async def agent(self, request: experimental.Agent, *,
                    trace_id: str | None = None) -> results.Submission:
        """A video agent: viral recreation or real estate (experimental: one source)."""
        return await self.submit(_expect(request, experimental.Agent), trace_id=trace_id)

    async def music_mv(self, request: experimental.MusicMV, *,
                       trace_id: str | None = None) -> results.Submission:
        """A music video; verify its audio first (experimental: one source)."""
        return await self.submit(_expect(request, experimental.MusicMV), trace_id=trace_id)

    async def swap_mask(self, request: models.SwapMask, *,
                        trace_id: str | None = None) -> results.SwapMaskResult:
        """Masks of a keyframe, answered at once (billable, so it takes a trace id too)."""
        request = _expect(request, models.SwapMask)
        resp = await self._send("POST", ENDPOINTS["swap_mask"].path, trace_id or new_trace_id(),
                                json=request.to_payload())
        return results.SwapMaskResult.from_resp(resp or {})

    # -- experimental: audio, voices, usage (one source each) ---------------------------------

    async def verify_audio(self, audio_media_id: int | str, *,
                           trace_id: str | None = None) -> Mapping[str, Any]:
        """Clear an uploaded song for :meth:`music_mv`; PixVerse answers ``{}`` (or 500063)."""
        request = experimental.AudioVerification(audio_media_id=audio_media_id)
        resp = await self._post_info(request, trace_id)
        return dict(resp) if isinstance(resp, Mapping) else {}

    async def create_tts_speaker(self, name: str, audio_media_id: int | str, *,
                                 trace_id: str | None = None) -> results.TtsSpeaker:
        """A custom voice from an uploaded audio sample."""
        request = experimental.TtsSpeakerCreate(name=name, audio_media_id=audio_media_id)
        return results.TtsSpeaker.from_resp(await self._post_info(request, trace_id), name)

    async def delete_tts_speaker(self, speaker_id: str, *, trace_id: str | None = None) -> None:
        """Delete a custom voice. A DELETE changes state, so it is sent once, like a POST."""
        if not speaker_id:
            raise InvalidRequest("speaker_id", "is required", err_code=400011)
        path = ENDPOINTS["delete_tts_speaker"].path.format(speaker_id=speaker_id)
        await self._send("DELETE", path, trace_id or new_trace_id())

    async def tts_speakers_by_type(self, speaker_type: str = "all", *, page_num: int = 1,
                                   page_size: int = 20) -> results.Page:
        """System and custom voices (``speaker_type`` system, custom or all): items
        ``{"speaker_id", "name"}``, as the older :meth:`tts_speakers` list."""
        resp = await self._get(ENDPOINTS["tts_speaker_list"].path, params={
            "page_num": page_num, "page_size": page_size, "speaker_type": speaker_type})
        return results.Page.from_resp(resp, "data")

    async def usage_detail(self, request: experimental.UsageDetail | None = None, *,
                           trace_id: str | None = None) -> results.UsagePage:
        """Charges and refunds (a POST that changes nothing; still sent once)."""
        request = _expect(request or experimental.UsageDetail(), experimental.UsageDetail)
        return results.UsagePage.from_resp(await self._post_info(request, trace_id))

    async def _post_info(self, request: models.PixVerseRequest, trace_id: str | None) -> Any:
        return await self._send("POST", ENDPOINTS[request.endpoint].path,
                                trace_id or new_trace_id(), json=request.to_payload())

    # -- reads ---------------------------------------------------------------------------------

    async def video_result(self, video_id: int) -> results.VideoResult:
        """The current record of a video job (status 5 while generating, ``url`` at 1)."""
        resp = await self._get(f"/video/result/{_positive_id('video_id', video_id)}")
        return results.VideoResult.from_resp(resp)

    async def image_result(self, image_id: int) -> results.ImageResult:
        resp = await self._get(f"/image/result/{_positive_id('image_id', image_id)}")
        return results.ImageResult.from_resp(resp)

    async def balance(self) -> results.Balance:
        return results.Balance.from_resp(await self._get(ENDPOINTS["account_balance"].path))

    async def tts_speakers(self, page_num: int = 1, page_size: int = 30) -> results.Page:
        """Lip-sync TTS speakers: items ``{"speaker_id", "name"}``."""
        resp = await self._get(ENDPOINTS["lip_sync_tts_list"].path,
                               params={"page_num": page_num, "page_size": page_size})
        return results.Page.from_resp(resp, "data")

    async def restyle_effects(self, page_num: int = 1, page_size: int = 30) -> results.Page:
        """Restyle presets (PixVerse has not published the item shape)."""
        resp = await self._get(ENDPOINTS["restyle_effect_list"].path,
                               params={"page_num": page_num, "page_size": page_size})
        return results.Page.from_resp(resp, "data")

    async def effect_templates(self, *, type: int = 1, page: int = 1,
                               page_size: int = 20) -> results.Page:
        """Effect templates for :class:`TemplateVideo` (semi-official endpoint)."""
        resp = await self._get(ENDPOINTS["effects_template_list"].path,
                               params={"type": type, "page": page, "pageSize": page_size})
        return results.Page.from_resp(resp, "effect_items")

    # -- uploads -------------------------------------------------------------------------------

    async def upload_image(
        self,
        source: Upload | None = None,
        *,
        url: str | None = None,
        filename: str | None = None,
        content_type: str | None = None,
        trace_id: str | None = None,
    ) -> results.UploadedImage:
        """Upload an image from a path, bytes or a binary file, or register a public ``url``.

        A path is streamed from disk, never read whole into memory.
        """
        resp = await self._upload(
            ENDPOINTS["upload_image"].path, "image", "image_url", source, url, filename,
            content_type, allowed=vocab.IMAGE_MIME_TYPES, max_bytes=vocab.IMAGE_MAX_BYTES,
            trace_id=trace_id,
        )
        return results.UploadedImage.from_resp(resp)

    async def upload_media(
        self,
        source: Upload | None = None,
        *,
        url: str | None = None,
        filename: str | None = None,
        content_type: str | None = None,
        trace_id: str | None = None,
    ) -> results.UploadedMedia:
        """Upload a video (mp4/mov/webm) or audio (mp3/wav/m4a/aac) file, or a public ``url``."""
        resp = await self._upload(
            ENDPOINTS["upload_media"].path, "file", "file_url", source, url, filename,
            content_type, allowed=vocab.VIDEO_MIME_TYPES | vocab.AUDIO_MIME_TYPES,
            max_bytes=vocab.MEDIA_MAX_BYTES, trace_id=trace_id,
        )
        return results.UploadedMedia.from_resp(resp)

    async def _upload(
        self,
        path: str,
        file_field: str,
        url_field: str,
        source: Upload | None,
        url: str | None,
        filename: str | None,
        content_type: str | None,
        *,
        allowed: frozenset[str],
        max_bytes: int,
        trace_id: str | None,
    ) -> Any:
        if (source is None) == (url is None):
            raise InvalidRequest(f"{file_field}|{url_field}", "give exactly one of a file or a url",
                                 err_code=400011)
        trace_id = trace_id or new_trace_id()
        if source is None:
            return await self._send("POST", path, trace_id, data={url_field: url},
                                    timeout=self._upload_timeout)
        with UploadPart(source, filename, content_type, allowed, max_bytes, file_field) as part:
            return await self._send("POST", path, trace_id, files={file_field: part},
                                    timeout=self._upload_timeout)

    # -- transport -----------------------------------------------------------------------------

    async def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        attempt = 0
        while True:
            try:
                # A GET changes nothing, so each try gets a fresh trace id, as PixVerse asks.
                return await self._send("GET", path, new_trace_id(), params=params)
            except PixVerseError as exc:
                if not exc.retryable or attempt >= self._get_retries:
                    raise
                delay = GET_BACKOFF_SECONDS * 2**attempt
                if isinstance(exc, RateLimitedError) and exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                attempt += 1
                await asyncio.sleep(delay)

    async def _send(self, method: str, path: str, trace_id: str, *,
                    timeout: httpx.Timeout | float | None = None, **kwargs: Any) -> Any:
        extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        try:
            response = await self._http.request(
                method, path, headers={TRACE_HEADER: trace_id}, **kwargs, **extra
            )
        except httpx.TimeoutException as exc:
            raise TransportError(f"{method} {path} timed out: {exc!r}", trace_id=trace_id) from exc
        except httpx.TransportError as exc:
            raise TransportError(f"{method} {path} failed: {exc!r}", trace_id=trace_id) from exc
        return envelope.unwrap(response.status_code, response.content, response.headers,
                               trace_id=trace_id)


def _expect(request: models.PixVerseRequest, cls: type[R]) -> R:
    if not isinstance(request, cls):
        raise InvalidRequest("request", f"expected {cls.__name__}, got {type(request).__name__}")
    return request


def _positive_id(field: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise InvalidRequest(field, f"must be a positive integer, got {value!r}", err_code=400013)
    return value
