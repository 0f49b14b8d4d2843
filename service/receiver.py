"""``POST /webhooks/pixverse``: verify PixVerse's signature, record the transition, answer ok.

Answers (PixVerse retries anything but ``200 ok``):

=====================================  ======  =============================================
what arrived                           status  what is written
=====================================  ======  =============================================
a verified event for a known job       200 ok  delivery + transition (+ its tasks), one commit
a verified event for an unknown id     200 ok  the delivery, as an orphan (so PixVerse stops)
the same nonce again                   409     nothing (the first delivery is recorded)
bad / missing signature, stale time    401     nothing
body not a flat JSON object, bad ids   400     nothing
content type other than JSON           415     nothing
body over ``webhook_max_bytes``        413     nothing
no webhook secret configured           503     nothing (PixVerse retries later)
the store failing                      503     nothing (PixVerse retries later)
=====================================  ======  =============================================

Nothing unauthenticated is written to the store, so junk traffic cannot fill the disk; it is
counted in :attr:`WebhookReceiver.outcomes` and logged. The request never waits on a handler:
handler tasks are only *queued* in the same transaction as the transition.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse

from service import lifecycle
from service.metrics import Metrics
from service.pixverse import signature
from service.pixverse.errors import MalformedPayloadError, SignatureError, StaleTimestampError
from service.settings import Settings
from service.store import StorageError, Store

logger = logging.getLogger(__name__)


class WebhookReceiver:
    """The Starlette endpoint; mount ``Route(path, receiver.endpoint, methods=["POST"])``."""

    def __init__(self, store: Store, settings: Settings, *,
                 clock: Callable[[], float] = time.time,
                 metrics: Metrics | None = None) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        #: Deliveries by outcome (ok, orphan, replayed, bad_signature, stale, malformed, ...).
        self.outcomes: collections.Counter[str] = collections.Counter()
        #: Where outcomes, timings and transitions are also counted (``None``: nowhere).
        self.metrics = metrics

    async def endpoint(self, request: Request) -> PlainTextResponse:
        started = time.perf_counter()
        outcome, response = await self._handle(request)
        self.outcomes[outcome] += 1
        if self.metrics is not None:
            self.metrics.record_webhook(outcome, time.perf_counter() - started)
        if response.status_code != 200:
            logger.info("webhook refused: %s (%s)", outcome, bytes(response.body).decode(),
                        extra={"action": "webhook", "outcome": outcome})
        return response

    async def _handle(self, request: Request) -> tuple[str, PlainTextResponse]:
        secrets = self._settings.webhook_secrets
        if not secrets:
            return "unconfigured", _answer(503, "PIXVERSE_WEBHOOK_SECRET is not set")
        # One plain dict (ASGI names are lower-case already): Starlette's Headers scans its list
        # on every lookup, and this path looks up several and stores them all.
        headers = dict(request.headers.items())
        limit = self._settings.webhook_max_bytes
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return "too_large", _answer(413, f"body over {limit} bytes")
        body = await _read_limited(request, limit)
        if body is None:
            return "too_large", _answer(413, f"body over {limit} bytes")
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return "wrong_content_type", _answer(415, "content type must be application/json")
        received_at = self._clock()
        try:
            event = signature.verify(body, headers, secrets,
                                     tolerance_seconds=self._settings.webhook_tolerance,
                                     now=received_at)
        except MalformedPayloadError as exc:
            return "malformed", _answer(400, str(exc))
        except StaleTimestampError as exc:
            return "stale", _answer(401, str(exc))
        except SignatureError as exc:
            return "bad_signature", _answer(401, str(exc))
        try:
            video_id, proposed = _read_event(event.payload)
        except ValueError as exc:
            return "malformed", _answer(400, str(exc))
        try:
            ingest = await self._store.ingest_webhook(
                body=body, headers=headers, nonce=event.nonce,
                timestamp=event.timestamp, received_at=received_at, video_id=video_id,
                proposed=proposed,
            )
        except StorageError:
            logger.exception("webhook for video %s not stored", video_id)
            return "store_error", _answer(503, "not stored; retry later")
        if ingest.outcome == "duplicate":
            return "replayed", _answer(409, "nonce already used; the event is recorded")
        if ingest.transition is None:
            logger.warning("webhook for unknown video %s kept as an orphan", video_id,
                           extra={"action": "webhook", "video_id": video_id})
            return "orphan", _answer(200, "ok")
        result = ingest.transition
        logger.info("webhook %s for job %s: %s", proposed.value, result.job.id,
                    result.outcome.value,
                    extra={"action": "webhook", "job_id": result.job.id,
                           "outcome": result.outcome.value})
        return ("ok" if result.applied else result.outcome.value), _answer(200, "ok")


def _answer(status: int, text: str) -> PlainTextResponse:
    return PlainTextResponse(text, status_code=status)


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None once it grows past ``limit`` (a lying Content-Length included)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _read_event(payload: dict[str, Any]) -> tuple[int, lifecycle.JobState]:
    """``(video_id, proposed state)`` from a webhook body; ValueError says what is wrong."""
    raw_id = payload.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise ValueError("id must be the video id")
    text = str(raw_id)
    if not text.isdigit() or not 0 < int(text) < 2**63:
        raise ValueError("id must be a positive 64-bit integer")
    status = payload.get("status")
    if isinstance(status, bool) or not isinstance(status, int):
        raise ValueError("status must be an integer")
    try:
        state = lifecycle.state_from_pixverse(status)
    except lifecycle.UnknownStatusError as exc:
        raise ValueError(str(exc)) from None
    return int(text), state
