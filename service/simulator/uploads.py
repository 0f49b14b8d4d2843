"""``POST /image/upload`` and ``POST /media/upload`` (multipart).

Uploaded bytes go to a temporary directory (deleted at shutdown), never to memory: Starlette
spools parts over 1 MB to disk and they are copied from there in chunks, hashed on the way.
The simulator has no internet, so an upload by URL (``image_url`` / ``file_url``) is recorded
but not fetched, and its URL serves the bundled sample.

Rules: an empty ``image`` / ``file`` part counts as absent (the official curl sends one);
exactly one of file and URL is required (none: 400011, both: 400017). Images: the part's
content type, or for a generic type the file extension, must be in
``vocab.IMAGE_MIME_TYPES`` (500032), size < 20 MB (500030), a URL must be http(s) (500042).
Media: the type decides ``media_type`` (video or audio; anything else 400017), size <= 50 MB
(400017; PixVerse's code for this is unknown). A moderation word (``config.moderation_words``)
in the file name, URL or file bytes is rejected: images with 500052 (served as HTTP 500 with
lower-case keys when ``config.lowercase_upload_errors``), media with 500063.

A video's answer also carries its ``width`` and ``height`` (ComfyUI models them on media
upload, §14), read from the MP4's track header; they are left out when the file is not a
readable MP4. An upload by URL reports the bundled sample's, which its URL serves.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import posixpath
import urllib.parse
from typing import BinaryIO, Literal

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from service.pixverse import vocab
from service.simulator import media
from service.simulator.calls import Caller, Reject, api_endpoint, ok
from service.simulator.state import SimulatorState, Upload

_COPY_CHUNK_BYTES = 1024 * 1024
_GENERIC_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})
MediaType = Literal["image", "video", "audio"]


@api_endpoint
async def upload_image(request: Request, state: SimulatorState, caller: Caller) -> Response:
    return await _upload(request, state, caller, image=True)


@api_endpoint
async def upload_media(request: Request, state: SimulatorState, caller: Caller) -> Response:
    return await _upload(request, state, caller, image=False)


async def _upload(request: Request, state: SimulatorState, caller: Caller, *,
                  image: bool) -> Response:
    stats = state.key_stats(caller.api_key)
    stats.submissions += 1
    if (cached := state.cached_answer(caller.api_key, caller.trace_id)) is not None:
        stats.cache_hits += 1
        return JSONResponse(cached)
    file_field, url_field = ("image", "image_url") if image else ("file", "file_url")
    try:
        form = await request.form(max_files=4, max_fields=16)
    except MultiPartException as exc:
        raise Reject(400013, f"body is not a valid multipart form ({exc.message})") from exc
    try:
        return await _store(request, state, caller, form, file_field, url_field, image=image)
    finally:
        await form.close()


async def _store(request: Request, state: SimulatorState, caller: Caller, form: FormData,
                 file_field: str, url_field: str, *, image: bool) -> Response:
    part = form.get(file_field)
    file = part if isinstance(part, UploadFile) and (part.size or 0) > 0 else None
    url = form.get(url_field)
    url = url.strip() if isinstance(url, str) and url.strip() else None
    if file is None and url is None:
        raise Reject(400011, f"{file_field} or {url_field} is required")
    if file is not None and url is not None:
        raise Reject(400017, f"give {file_field} or {url_field}, not both")
    reject_code = 500052 if image else 500063
    lowercase = image and state.config.lowercase_upload_errors
    words = tuple(w.lower() for w in state.config.moderation_words if w)
    name = (file.filename or "") if file is not None else (url or "")
    if any(w in name.lower() for w in words):
        raise Reject(reject_code, f"{name!r} failed moderation", lowercase_http_500=lowercase)
    if url is not None:
        media_type, mime = _url_type(url, image=image)
        size, digest, path = 0, "", None
    else:
        assert file is not None
        media_type, mime = _file_type(file, image=image)
        size = file.size or 0
        if image and size >= vocab.IMAGE_MAX_BYTES:
            raise Reject(500030, f"{size} bytes; the limit is under {vocab.IMAGE_MAX_BYTES}")
        if not image and size > vocab.MEDIA_MAX_BYTES:
            raise Reject(400017, f"file: {size} bytes; the limit is {vocab.MEDIA_MAX_BYTES}")
    # Checked again: a twin request may have finished while the form was parsed.
    if (cached := state.cached_answer(caller.api_key, caller.trace_id)) is not None:
        state.key_stats(caller.api_key).cache_hits += 1
        return JSONResponse(cached)
    upload_id = state.new_id("img" if image else "media")
    if file is not None:
        path = os.path.join(state.upload_dir(), str(upload_id))
        digest, flagged = await run_in_threadpool(_copy, file.file, path, words)
        if flagged is not None:
            os.unlink(path)
            raise Reject(reject_code, f"the file contains {flagged!r}",
                         lowercase_http_500=lowercase)
    dimensions = None
    if media_type == "video":
        dimensions = await run_in_threadpool(media.mp4_dimensions, path or media.SAMPLE_MP4)
    # A twin may also have finished during the copy; keep the first answer.
    if (cached := state.cached_answer(caller.api_key, caller.trace_id)) is not None:
        if path is not None:
            os.unlink(path)
        return JSONResponse(cached)
    state.add_upload(Upload(
        id=upload_id, api_key=caller.api_key, media_type=media_type, mime=mime,
        filename=(file.filename or "") if file is not None else "", size=size, sha256=digest,
        path=path, source_url=url, created_at=state.wall_clock(),
    ))
    link = media.upload_url(caller.base_url, upload_id)
    if image:
        answer = ok({"img_id": upload_id, "img_url": link})
    else:
        resp: dict[str, object] = {"media_id": upload_id, "media_type": media_type, "url": link}
        if dimensions is not None:
            resp["width"], resp["height"] = dimensions
        answer = ok(resp)
    state.remember_answer(caller.api_key, caller.trace_id, answer)
    return JSONResponse(answer)


def _copy(source: BinaryIO, path: str, words: tuple[str, ...]) -> tuple[str, str | None]:
    """Copy to ``path`` in chunks (run in a thread); return the sha256 and the first
    moderation word found in the bytes."""
    digest = hashlib.sha256()
    longest = max((len(w) for w in words), default=0)
    tail = b""
    flagged: str | None = None
    source.seek(0)
    with open(path, "wb") as out:
        while chunk := source.read(_COPY_CHUNK_BYTES):
            digest.update(chunk)
            out.write(chunk)
            if flagged is None and words:
                # Keep a tail so a word split across two chunks is still found.
                window = (tail + chunk).lower()
                flagged = next((w for w in words if w.encode() in window), None)
                tail = window[-longest:] if longest > 1 else b""
    return digest.hexdigest(), flagged


def _file_type(file: UploadFile, *, image: bool) -> tuple[MediaType, str]:
    declared = (file.content_type or "").split(";")[0].strip().lower()
    mime = declared
    if declared in _GENERIC_TYPES:
        mime = (mimetypes.guess_type(file.filename or "")[0] or "").lower()
    return _classify(mime, f"{'image' if image else 'file'} ({file.filename!r}, {declared!r})",
                     image=image)


def _url_type(url: str, *, image: bool) -> tuple[MediaType, str]:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        if image:
            raise Reject(500042, f"image_url: {url!r} is not an http(s) URL")
        raise Reject(400017, f"file_url: {url!r} is not an http(s) URL")
    mime = (mimetypes.guess_type(posixpath.basename(parsed.path))[0] or "").lower()
    if not mime and image:
        return "image", "image/jpeg"  # no extension: assume an image and let it be
    return _classify(mime, f"{'image_url' if image else 'file_url'} ({url!r})", image=image)


def _classify(mime: str, what: str, *, image: bool) -> tuple[MediaType, str]:
    if image:
        if mime in vocab.IMAGE_MIME_TYPES:
            return "image", mime
        raise Reject(500032, f"{what}: allowed types are "
                             f"{', '.join(sorted(vocab.IMAGE_MIME_TYPES))}")
    if mime in vocab.VIDEO_MIME_TYPES:
        return "video", mime
    if mime in vocab.AUDIO_MIME_TYPES:
        return "audio", mime
    raise Reject(400017, f"{what}: not a supported video or audio type")


def routes() -> list[Route]:
    return [
        Route("/image/upload", upload_image, methods=["POST"]),
        Route("/media/upload", upload_media, methods=["POST"]),
    ]
