"""What the chat handlers beyond Slack (Discord, Teams, Telegram) share: one bounded exchange
with a chat service, its answer translated into the handler's ways of ending, and the facts a
notification shows.

How a run ends (the exception tree is drawn in :mod:`service.exceptions`):

* a 429: ``Retry`` after the service's delay: the ``Retry-After`` header, else the
  ``retry_after`` Discord and Telegram put in their JSON answers;
* a 5xx, a transport failure, or no whole answer within ``PIXHOOK_OUTBOUND_TIMEOUT``:
  :class:`ChatDeliveryError` (a ``TransientError``; the worker backs off);
* any other 4xx: :class:`ChatRefusedError` (a ``PermanentError``: running again cannot help;
  Telegram's handler catches a refused video to fall back to a plain message).

Every URL these handlers post to carries a credential (a webhook's token, a bot's token), so it
is kept out of httpx's request log (:func:`handlers.slack.protect`) and out of every error
message: errors name the service, the status and a short, printable excerpt of the answer with
the URL and the ``secret`` cut out, and httpx errors are re-raised ``from None``.

The URLs come from the operator's configuration, never from a job or a webhook, so like Slack's
they are not put through the private-address guard.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import httpx

from service.handler_api import (
    IDENTITY,
    BaseHandler,
    Job,
    JobState,
    PermanentError,
    Retry,
    Settings,
    TransientError,
    Transition,
    excerpt,
    read_capped,
    reported_video,
    retry_after_seconds,
)

from .slack import format_duration, protect

#: A chat service should answer within this many seconds (per phase; the whole exchange is
#: bounded by ``PIXHOOK_OUTBOUND_TIMEOUT``).
REQUEST_TIMEOUT_SECONDS: Final = 10.0
#: Wait after a 429 that came without a usable delay.
DEFAULT_RETRY_AFTER_SECONDS: Final = 30.0
#: Most characters of an answer quoted in an error message.
ANSWER_MAX_CHARS: Final = 120
REDACTED: Final = "[redacted]"
#: States a chat handler reports by default: the ends a person wants to hear about.
CHAT_EVENTS: Final = frozenset({JobState.SUCCEEDED, JobState.FAILED,
                                JobState.MODERATION_FAILED, JobState.REJECTED})


class ChatDeliveryError(TransientError):
    """The service could not be reached or answered with a server error: retried with backoff."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        #: The HTTP status, or ``None`` when no answer arrived.
        self.status = status


class ChatRefusedError(PermanentError):
    """The service refused the message (a 4xx other than 429): the task is dead at once."""

    def __init__(self, message: str, *, status: int, answer: str) -> None:
        super().__init__(message)
        self.status = status
        #: The service's answer, redacted and cut short.
        self.answer = answer


async def send(http: httpx.AsyncClient, url: str, *, service: str, deadline: float,
               secret: str = "", **request: Any) -> bytes:
    """POST to ``url`` (``request`` is httpx's ``json=``, ``data=``, ``files=``) and return
    the 2xx answer's body (at most :data:`~service.outbound.MAX_ANSWER_BYTES`); raise as the
    module docstring says otherwise. The whole exchange takes at most ``deadline`` seconds
    (0: no limit)."""
    try:
        async with asyncio.timeout(deadline or None):
            async with http.stream("POST", url, headers=IDENTITY,
                                   timeout=REQUEST_TIMEOUT_SECONDS, **request) as response:
                body = await read_capped(response)
    except TimeoutError:
        raise ChatDeliveryError(f"{service} sent no whole answer within {deadline:g} s "
                                "(PIXHOOK_OUTBOUND_TIMEOUT)") from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL):
        raise PermanentError(f"the {service} URL is not a valid http(s) URL") from None
    except httpx.HTTPError as exc:
        # ``from None``: an httpx error's text may name the URL, and so its token.
        raise ChatDeliveryError(f"{service} request failed: {type(exc).__name__}") from None
    if response.is_success:
        return body
    answer = _answer(body, url, secret)
    status = response.status_code
    if status == 429:
        raise Retry(after=_retry_after(response, body), reason=f"{service} rate limit: {answer}")
    if status >= 500:
        raise ChatDeliveryError(f"{service} answered HTTP {status}: {answer}", status=status)
    raise ChatRefusedError(f"{service} refused the message: HTTP {status}: {answer}",
                           status=status, answer=answer)


def _answer(body: bytes, url: str, secret: str) -> str:
    """The answer fit for an error message: the URL and secret cut out before it is shortened,
    so no part of them survives."""
    text = body.decode("utf-8", "replace")
    for value in sorted(filter(None, (url, secret)), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return excerpt(text, ANSWER_MAX_CHARS) or "(empty)"


def _retry_after(response: httpx.Response, body: bytes) -> float:
    """The ``Retry-After`` header, else Discord's ``retry_after`` or Telegram's
    ``parameters.retry_after`` (seconds), else :data:`DEFAULT_RETRY_AFTER_SECONDS`."""
    seconds = retry_after_seconds(response.headers.get("retry-after"))
    if seconds is not None:
        return seconds
    try:
        answer = json.loads(body)
    except ValueError:
        return DEFAULT_RETRY_AFTER_SECONDS
    if isinstance(answer, dict):
        parameters = answer.get("parameters")
        for value in (answer.get("retry_after"),
                      parameters.get("retry_after") if isinstance(parameters, dict) else None):
            if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
                return float(value)
    return DEFAULT_RETRY_AFTER_SECONDS


def facts(job: Job, transition: Transition) -> list[tuple[str, str]]:
    """``(label, value)`` pairs every chat message shows, as plain text."""
    facts = [("State", transition.to_state.value), ("Kind", job.kind)]
    length = job.params.get("duration")
    if isinstance(length, int | float) and not isinstance(length, bool):
        facts.append(("Video length", format_duration(length)))
    facts.append(("Generation time", format_duration(transition.received_at - job.created_at)))
    credits = reported_video(transition).credits
    if credits is not None:
        facts.append(("Credits", str(credits)))
    facts.append(("Job", job.id))
    return facts


def cut(text: str, limit: int) -> str:
    """``text`` (line breaks kept) cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def option(options: Mapping[str, Any], name: str) -> str:
    """A string option, stripped; ``""`` when unset."""
    return str(options.get(name) or "").strip()


class ChatHandler(BaseHandler):
    """A chat handler: it reports the ends of a job after the download, and runs only when
    its ``required`` options are set (the first is a secret, kept out of every log)."""

    events: ClassVar[frozenset[JobState]] = CHAT_EVENTS
    after: ClassVar[tuple[str, ...]] = ("download",)
    required: ClassVar[tuple[str, ...]] = ("webhook_url",)

    def __init__(self, settings: Settings, options: Mapping[str, Any]) -> None:
        super().__init__(settings, options)
        protect(option(options, self.required[0]))

    def wants(self, job: Job, transition: Transition) -> bool:
        return all(option(self.options, name) for name in self.required)
