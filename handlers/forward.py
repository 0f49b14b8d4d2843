"""Forward each transition of a job to its ``callback_url``, signed the Standard Webhooks way.

A submitter that passes ``callback_url`` gets one POST per state change it can act on
(``generating`` and every final state), so it never has to poll pixhook. The request follows
Standard Webhooks (https://www.standardwebhooks.com), which any of its libraries (or Svix's)
verifies with the same ``whsec_`` secret (``PIXHOOK_FORWARD_SECRET``)::

    webhook-id: msg_<32 hex>        the same on every retry of this event: dedupe on it
    webhook-timestamp: 1730000000   when this attempt was sent (integer seconds)
    webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">

    {"type": "job.succeeded", "timestamp": "2025-01-01T12:00:00.000000Z",
     "data": {"id": ..., "kind": ..., "state": ..., "params": {...}, "video_id": ...,
              "video_id_str": "...", "labels": {...}, "parent_job_id": ..., "last_error": ...,
              "created_at": ..., "updated_at": ..., "state_changed_at": ...,
              "result": {"url", "size", "credits", "has_audio"},
              "transition": {"from_state", "to_state", "source", "received_at"}}}

``type`` and ``data.transition`` name the event; ``data.state`` is where the job stands when
the event is sent, which is later than the event if the job has moved on since (a retried
``job.succeeded`` may say ``"state": "deleted"``). ``timestamp`` is when pixhook learnt of the
transition. Events may arrive more than once and out of order, as with any webhook.

How the receiver's answer ends the task, following Standard Webhooks and Svix: 2xx delivers;
410 Gone means "stop sending", so the task is dead; 429 or 503 with ``Retry-After`` waits that
long (at most ``PIXHOOK_TASK_BACKOFF_MAX``); anything else, redirects included, is retried with
backoff until the task is dead. The error kept for ``/api/tasks`` starts with the status and
quotes at most :data:`~service.outbound.EXCERPT_CHARS` printable characters of the answer.

``callback_url`` is the submitter's to choose, so it must not reach pixhook's own network
(server-side request forgery). :class:`~service.outbound.AddressGuard` refuses it, and the
task is dead at once, when it is not http(s), carries user info (httpx would send it as an
``Authorization`` header) or its host resolves to a loopback, private, link-local or otherwise
non-public address, unless ``PIXHOOK_FORWARD_ALLOW_PRIVATE`` (receivers on your own network,
local tests). Redirects are not followed, as Svix does: the guard checks the one address the
event goes to, a redirect would send the signed event on to a host nobody checked, and a moved
endpoint should fail loudly rather than receive events somewhere unexpected.

The exchange is bounded: the guard's lookup, connecting, sending and the answer take at most
``PIXHOOK_OUTBOUND_TIMEOUT`` in all (a receiver trickling its answer cannot hold a task slot),
a 2xx body is never read, and of any other at most :data:`~service.outbound.MAX_ANSWER_BYTES`.

The signing is written out here rather than taken from the ``standardwebhooks`` package, so
pixhook needs no extra dependency; the tests verify it with that package.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import time
from datetime import UTC, datetime
from typing import Any, ClassVar, Final
from urllib.parse import urljoin, urlsplit

import httpx

from service.handler_api import (
    IDENTITY,
    AddressGuard,
    BaseHandler,
    HandlerContext,
    Job,
    JobState,
    PermanentError,
    Retry,
    TransientError,
    Transition,
    excerpt,
    parse_url,
    read_capped,
    redact,
    reported_video,
    retry_after_seconds,
)

#: Seconds a receiver has to answer. Standard Webhooks suggests 15-30 s for its own retries;
#: ours are cheap, and a slow receiver should not hold a worker slot.
FORWARD_TIMEOUT_SECONDS: Final = 10.0
#: The prefix Standard Webhooks puts in front of a base64 symmetric secret.
SECRET_PREFIX: Final = "whsec_"
#: Statuses whose ``Retry-After`` is honoured (rate limited; temporarily unavailable).
THROTTLE_STATUSES: Final = frozenset({429, 503})


class DeliveryError(TransientError):
    """The receiver did not take the event (bad status, redirect, network); the worker retries
    with backoff."""


def signing_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret. Errors never quote the secret."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        # Standard Webhooks libraries accept unpadded base64, so pad before decoding.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise PermanentError("PIXHOOK_FORWARD_SECRET is not whsec_ followed by base64") from None
    if not key:
        raise PermanentError("PIXHOOK_FORWARD_SECRET has an empty key after whsec_")
    return key


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: ``v1,`` and the base64 HMAC-SHA256 of
    ``{msg_id}.{timestamp}.{body}``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def message_id(idempotency_key: str) -> str:
    """A ``webhook-id`` that is the same for every run of one task and differs between tasks.

    Hashed rather than the key itself: the key's shape (``job:state:handler``) is internal,
    and a hash is header- and URL-safe whatever the job ids look like.
    """
    return "msg_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def safe_url(url: str) -> str:
    """``url`` without credentials, query or fragment, which may carry the receiver's tokens;
    fit for logs and task errors."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a bad port or bracket: the receiver's Location can say anything
        return "(an unreadable URL)"
    host = parts.hostname or ""
    if port is not None:
        host = f"{host}:{port}"
    return f"{parts.scheme}://{host}{parts.path}"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_body(job: Job, transition: Transition) -> dict[str, Any]:
    """The event as the receiver sees it (see the module docstring).

    Fields are listed, not copied wholesale, so a new internal ``Job`` field (like
    ``media_path``, a path on pixhook's disk) never leaks by default. ``callback_url`` is left
    out too: the receiver knows it, and its query may hold a token.
    """
    result = reported_video(transition)
    data: dict[str, Any] = {
        "id": job.id,
        "kind": job.kind,
        "state": job.state.value,
        "params": job.params,
        "video_id": job.video_id,
        # JavaScript clients lose precision past 2**53; the string form is always exact.
        "video_id_str": None if job.video_id is None else str(job.video_id),
        "labels": job.labels,
        "parent_job_id": job.parent_job_id,
        "last_error": job.last_error,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "state_changed_at": job.state_changed_at,
        "result": {"url": result.url, "size": result.size, "credits": result.credits,
                   "has_audio": result.has_audio},
        "transition": {
            "from_state": None if transition.from_state is None else transition.from_state.value,
            "to_state": transition.to_state.value,
            "source": transition.source.value,
            "received_at": transition.received_at,
        },
    }
    return {"type": f"job.{transition.to_state.value}",
            "timestamp": _iso(transition.received_at), "data": data}


class ForwardHandler(BaseHandler):
    """POSTs each transition to the job's ``callback_url``, signed with
    ``PIXHOOK_FORWARD_SECRET``."""

    name: ClassVar[str] = "forward"
    # Not queued or submitting: those are pixhook's own bookkeeping, before PixVerse has the job.
    events: ClassVar[frozenset[JobState]] = frozenset({
        JobState.GENERATING, JobState.SUCCEEDED, JobState.FAILED, JobState.MODERATION_FAILED,
        JobState.REJECTED, JobState.DELETED,
    })

    def wants(self, job: Job, transition: Transition) -> bool:
        return bool(job.callback_url)

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        url = job.callback_url
        if not url:
            return  # wants() said no; a task queued anyway has nothing to do
        secret = context.settings.forward_secret
        if not secret:
            # Dead rather than skipped, so the undelivered event shows in /api/tasks and can be
            # retried once the secret is set.
            raise PermanentError("PIXHOOK_FORWARD_SECRET is not set; set it to a whsec_ "
                                 "secret to sign events to callback_url, then retry the task")
        callback = parse_url(url, "callback_url")
        guard = AddressGuard(allow_private=context.settings.forward_allow_private,
                             setting="PIXHOOK_FORWARD_ALLOW_PRIVATE", action="POST to",
                             unresolved=DeliveryError)
        guard.check_form(callback)  # http(s), a host, no user info: dead at once otherwise
        key = signing_key(secret)
        body = json.dumps(event_body(job, transition), separators=(",", ":")).encode()
        msg_id = message_id(context.task.idempotency_key)
        # The attempt's own time, not the event's: receivers reject stale timestamps (5 min in
        # the Standard Webhooks libraries), and a retried event may be hours old.
        timestamp = int(time.time())
        headers = {"content-type": "application/json", "user-agent": "pixhook",
                   "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign(key, msg_id, timestamp, body), **IDENTITY}
        target = redact(callback)
        deadline = context.settings.outbound_timeout
        try:
            async with asyncio.timeout(deadline or None):
                await guard.check_addresses(callback)
                async with context.http.stream(
                        "POST", callback, content=body, headers=headers,
                        timeout=FORWARD_TIMEOUT_SECONDS, follow_redirects=False) as response:
                    # A 2xx body says nothing we use; any other is quoted, in part.
                    answer = b"" if response.is_success else await read_capped(response)
        except TimeoutError:
            raise DeliveryError(f"POST {target} got no whole answer within {deadline:g} s "
                                "(PIXHOOK_OUTBOUND_TIMEOUT)") from None
        except httpx.HTTPError as exc:
            # Not chained: httpx's own message is kept, but its request (full URL) is not.
            raise DeliveryError(f"POST {target} failed: {type(exc).__name__}: {exc}") from None
        self._judge(response, answer, target, context)
        context.logger.info("job %s: forwarded job.%s to %s as %s (HTTP %d)", job.id,
                            transition.to_state.value, target, msg_id, response.status_code)

    def _judge(self, response: httpx.Response, answer: bytes, target: str,
               context: HandlerContext) -> None:
        """Return if the receiver took the event; otherwise raise what the task should do.
        Messages start with the status, and quote the receiver only in sanitised excerpts."""
        status = response.status_code
        if 200 <= status < 300:
            return
        said = f"HTTP {status} from {target}"
        if 300 <= status < 400:
            location = response.headers.get("location")
            to = f" to {excerpt(safe_url(urljoin(target, location)))}" if location else ""
            raise DeliveryError(f"{said}, a redirect{to}; redirects are not followed: point "
                                "callback_url at the final address")
        if status == 410:
            raise PermanentError(f"{said} (Gone): the receiver asked for no more events")
        if status in THROTTLE_STATUSES:
            after = retry_after_seconds(response.headers.get("retry-after"), time.time())
            if after is not None:
                raise Retry(min(after, context.settings.task_backoff_max),
                            f"{said} with Retry-After {after:g} s")
        quoted = excerpt(answer)
        raise DeliveryError(f"{said}: {quoted}" if quoted else said)
