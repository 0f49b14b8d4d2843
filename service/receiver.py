"""``POST /webhooks/pixverse``: verify PixVerse's signature, record the transition, answer ok.

Answers (PixVerse retries anything but ``200 ok`` about 8 times, then gives the event up):

=====================================  ======  =============================================
what arrived                           status  what is written
=====================================  ======  =============================================
a verified event for a known job       200 ok  delivery + transition (+ its tasks), one commit
a verified event for an unknown id     200 ok  the delivery, as an orphan (so PixVerse stops)
a verified event with a status code    200 ok  the delivery, with the job if its video id is
this version does not know, or an id           known, and an ``error`` saying why; no job
or status of the wrong type                    changes (a 4xx would make PixVerse give the
                                               event up, and it would be lost)
the same nonce again                   409     nothing (the first delivery is recorded)
bad / missing signature, stale time    401     nothing
body not a flat JSON object            400     nothing
content type other than JSON           415     nothing
body over ``webhook_max_bytes``        413     nothing
body not whole within ``body_timeout`` 408     nothing; the connection is closed
sender hung up mid-body                (none)  nothing; one debug line
no webhook secret configured           503     nothing (PixVerse retries later)
the store failing                      503     nothing (PixVerse retries later)
=====================================  ======  =============================================

Nothing unauthenticated is written to the store, so junk traffic cannot fill the disk; it is
counted in :attr:`WebhookReceiver.outcomes` and logged on one line, never with a traceback.
The request never waits on a handler: handler tasks are only *queued* in the same
transaction as the transition.

The receiver is a plain ASGI app (mounted as a Starlette ``Route``): this is pixhook's hot
path, and Starlette's request and response objects and their wrappers would add about 2 % to
a webhook's CPU (``scripts/bench_ingest``, docs/benchmarks.md).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from starlette.types import Receive, Scope, Send

from service import bodies, lifecycle, tracing
from service.metrics import Metrics
from service.pixverse import signature, vocab
from service.pixverse.errors import MalformedPayloadError, SignatureError, StaleTimestampError
from service.settings import Settings
from service.store import StorageError, Store

logger = logging.getLogger(__name__)


class _Answer(NamedTuple):
    status: int
    text: str
    headers: Mapping[str, str] | None = None


class WebhookReceiver:
    """An ASGI app; mount ``Route(path, receiver, methods=["POST"])``."""

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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        outcome, answer = await self._handle(scope, receive, time.time_ns())
        self.outcomes[outcome] += 1
        if self.metrics is not None:
            self.metrics.record_webhook(outcome, time.perf_counter() - started)
        if outcome == "client_disconnected":  # routine on a flaky network; nobody to answer
            logger.debug("webhook sender hung up mid-body",
                         extra={"action": "webhook", "outcome": outcome})
        elif answer.status != 200 and outcome != "bad_signature":  # logged above
            logger.info("webhook refused: %s (%s)", outcome, answer.text,
                        extra={"action": "webhook", "outcome": outcome})
        await _send_answer(send, answer)

    async def _handle(self, scope: Scope, receive: Receive,
                      started_ns: int) -> tuple[str, _Answer]:
        secrets = self._settings.webhook_secrets
        if not secrets:
            return "unconfigured", _Answer(503, "PIXVERSE_WEBHOOK_SECRET is not set")
        # One plain dict, decoded as Starlette does (ASGI names are lower-case already; a
        # repeated header keeps its last value): this path looks up several and stores them.
        headers = {name.decode("latin-1"): value.decode("latin-1")
                   for name, value in scope["headers"]}
        try:
            body = await bodies.read_asgi_body(
                receive, headers.get("content-length", ""),
                max_bytes=self._settings.webhook_max_bytes, deadline=self._settings.body_timeout)
        except bodies.BodyTooLargeError as exc:
            return "too_large", _Answer(413, str(exc))
        except bodies.BodyTimeoutError as exc:
            return "body_timeout", _Answer(408, str(exc), bodies.CLOSE_HEADERS)
        except bodies.ClientDisconnectedError as exc:
            return "client_disconnected", _Answer(400, str(exc))  # uvicorn drops it
        media_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != "application/json":
            return "wrong_content_type", _Answer(415, "content type must be application/json")
        received_at = self._clock()
        try:
            event = signature.verify(body, headers, secrets,
                                     tolerance_seconds=self._settings.webhook_tolerance,
                                     now=received_at)
        except MalformedPayloadError as exc:
            return "malformed", _Answer(400, str(exc))
        except StaleTimestampError as exc:
            return "stale", _Answer(401, str(exc))
        except SignatureError as exc:
            # WARNING, not INFO: every webhook refused like this is a job that finishes only
            # when the reconciler polls. The id is unverified, but it is what finds the job.
            logger.warning("webhook refused: bad_signature (claims video id %s): "
                           "PIXVERSE_WEBHOOK_SECRET is probably wrong", _claimed_id(body),
                           extra={"action": "webhook", "outcome": "bad_signature"})
            return "bad_signature", _Answer(401, str(exc))
        read = _read_event(event.payload)
        if isinstance(read, _Unusable):
            return await self._keep(read, body, headers, event, received_at)
        video_id, proposed = read
        ingest_started_ns = time.time_ns()
        try:
            ingest = await self._store.ingest_webhook(
                body=body, headers=headers, nonce=event.nonce,
                timestamp=event.timestamp, received_at=received_at, video_id=video_id,
                proposed=proposed,
            )
        except StorageError:
            logger.exception("webhook for video %s not stored", video_id)
            return "store_error", _Answer(503, "not stored; retry later")
        if ingest.outcome == "duplicate":
            return "replayed", _Answer(409, "nonce already used; the event is recorded")
        if ingest.transition is None:
            logger.warning("webhook for unknown video %s kept as an orphan", video_id,
                           extra={"action": "webhook", "video_id": video_id})
            return "orphan", _Answer(200, "ok")
        result = ingest.transition
        tracing.record_transition("pixverse.webhook", result, video_id=video_id,
                                  started_ns=started_ns, write_started_ns=ingest_started_ns)
        logger.info("webhook %s for job %s: %s", proposed.value, result.job.id,
                    result.outcome.value,
                    extra={"action": "webhook", "job_id": result.job.id,
                           "outcome": result.outcome.value})
        return ("ok" if result.applied else result.outcome.value), _Answer(200, "ok")

    async def _keep(self, unusable: _Unusable, body: bytes, headers: Mapping[str, str],
                    event: signature.VerifiedWebhook,
                    received_at: float) -> tuple[str, _Answer]:
        """Keep a verified event no job can take, and answer ``ok`` so PixVerse does not give
        it up; the delivery's ``error`` (shown with the job) says why nothing changed."""
        try:
            ingest = await self._store.keep_webhook(
                body=body, headers=headers, nonce=event.nonce, timestamp=event.timestamp,
                received_at=received_at, video_id=unusable.video_id, error=unusable.error)
        except StorageError:
            logger.exception("webhook for video %s not stored", unusable.video_id)
            return "store_error", _Answer(503, "not stored; retry later")
        if ingest.outcome == "duplicate":
            return "replayed", _Answer(409, "nonce already used; the event is recorded")
        job_id = ingest.delivery.job_id if ingest.delivery else None
        logger.warning("webhook kept, not applied: %s (video %s, job %s)",
                       unusable.error, unusable.video_id, job_id,
                       extra={"action": "webhook", "outcome": unusable.outcome,
                              "job_id": job_id})
        return unusable.outcome, _Answer(200, "ok")


async def _send_answer(send: Send, answer: _Answer) -> None:
    """``answer`` as Starlette's ``PlainTextResponse`` would send it."""
    body = answer.text.encode()
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1"))
               for name, value in (answer.headers or {}).items()]
    headers += [(b"content-length", str(len(body)).encode()),
                (b"content-type", b"text/plain; charset=utf-8")]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclasses.dataclass(frozen=True)
class _Unusable:
    """A verified event that no job can take: why (``error``), and its metric outcome."""

    outcome: str
    video_id: int | None
    error: str


def _read_event(payload: dict[str, Any]) -> tuple[int, lifecycle.JobState] | _Unusable:
    """``(video_id, proposed state)`` from a verified webhook body, or why it cannot be."""
    raw_id = payload.get("id")
    video_id = vocab.video_id(raw_id)
    if video_id is None:
        return _Unusable("unreadable_event", None,
                         f"id {_shown(raw_id)} is not a PixVerse video id; no job is changed")
    status = payload.get("status")
    if isinstance(status, bool) or not isinstance(status, int):
        return _Unusable("unreadable_event", video_id,
                         f"status {_shown(status)} is not a PixVerse status code; "
                         "the job is unchanged")
    try:
        return video_id, lifecycle.state_from_pixverse(status)
    except lifecycle.UnknownStatusError:
        return _Unusable("unknown_status", video_id,
                         f"unknown PixVerse status {_shown(status)}; the job is unchanged")


def _claimed_id(body: bytes) -> str:
    """The video id an unverified body claims, for the log: digits only, else ``unknown``."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # junk, or nested too deep to parse
        return "unknown"
    claimed = payload.get("id") if isinstance(payload, dict) else None
    return vocab.id_digits(claimed) or "unknown"


def _shown(value: object) -> str:
    """``repr(value)`` cut short: it goes into a log line and the delivery's ``error``."""
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
