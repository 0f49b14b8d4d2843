"""Slack notifications: one Block Kit message per finished job, to an incoming webhook.

The message says what was asked (kind and prompt), how it ended (state, error), what it cost
(credits, generation time) and where the video is. The link prefers pixhook's own signed,
expiring ``GET /media/{token}`` (the download handler has stored the file and
``PIXHOOK_PUBLIC_URL`` says how others reach us) over PixVerse's URL. Since the worker runs this
handler ``after`` the download task of the same transition, the job is read again at run time:
the copy captured when the task was queued predates the download.

An incoming-webhook URL *is* a credential: anyone who has it can post to the channel. It never
goes into a log record or an exception message:

* our own errors name only the status, Slack's short answer or the exception class;
* httpx errors carry the URL in their text, so they are re-raised ``from None`` (the worker logs
  tracebacks, and a chained cause would print the original text);
* httpx itself logs every request's URL at INFO, so a filter on its logger rewrites records
  that contain a configured webhook URL (see :class:`WebhookURLRedactor`).

Delivery is at least once, like every task: Slack's webhooks take no idempotency key, so a run
replayed after a crash can post the same message twice. A duplicate notification is the better
failure than a lost one.

How a run ends (the exception tree is drawn in :mod:`service.exceptions`): ``Retry`` on a 429,
after Slack's ``Retry-After``; ``PermanentError`` on any other 4xx or an unusable URL, since
running again cannot help; :class:`SlackDeliveryError` (a ``TransientError``: the worker backs
off) on a 5xx, a transport failure or no whole answer within ``PIXHOOK_OUTBOUND_TIMEOUT``.

The post is bounded like every outgoing handler call (:mod:`service.outbound`): the whole
exchange within ``PIXHOOK_OUTBOUND_TIMEOUT``, a 2xx body never read, any other read up to
:data:`~service.outbound.MAX_ANSWER_BYTES` and quoted only in a short, printable excerpt. The
URL is not put through the private-address guard: it comes from the operator's configuration
(a setting or ``[handler.slack]``), never from a job or a webhook, and a Slack stand-in on
your own network is a legitimate choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import httpx

from service.handler_api import (
    IDENTITY,
    BaseHandler,
    HandlerContext,
    Job,
    JobState,
    PermanentError,
    Retry,
    Settings,
    TransientError,
    Transition,
    excerpt,
    media_url,
    read_capped,
    reported_video,
    retry_after_seconds,
)

#: Slack should answer within this many seconds; a slower answer counts as a failed run.
REQUEST_TIMEOUT_SECONDS: Final = 10.0
#: Wait after a 429 that came without a usable ``Retry-After`` (Slack normally sends one).
DEFAULT_RETRY_AFTER_SECONDS: Final = 30.0
#: Longest prompt quoted, in characters; the job has the rest.
PROMPT_MAX_CHARS: Final = 300
#: Longest error quoted, in characters.
ERROR_MAX_CHARS: Final = 500
#: Most characters of Slack's answer kept in an error message (it is a short code like
#: ``no_service``; anything longer is a proxy's error page).
ANSWER_MAX_CHARS: Final = 100
REDACTED: Final = "[redacted Slack webhook URL]"

#: Parameters that hold the text a job was asked for, by kind, most specific first.
PROMPT_PARAMS: Final = ("prompt", "restyle_prompt", "sound_effect_content",
                        "lip_sync_tts_content")

STATE_EMOJI: Final[Mapping[JobState, str]] = {
    JobState.SUCCEEDED: ":white_check_mark:",
    JobState.FAILED: ":x:",
    JobState.MODERATION_FAILED: ":no_entry:",
    JobState.REJECTED: ":no_entry_sign:",
    JobState.DELETED: ":wastebasket:",
}


class SlackDeliveryError(TransientError):
    """Slack could not be reached, or answered with a server error: the worker retries with
    exponential backoff, which is what a flaky network or a Slack outage needs."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        #: Slack's HTTP status, or ``None`` when no answer arrived.
        self.status = status


class WebhookURLRedactor(logging.Filter):
    """Rewrites log records that mention a registered webhook URL.

    Installed on the ``httpx`` logger, which logs ``HTTP Request: POST <full URL> ...`` at INFO
    for every request made through any client; there is no per-request switch to turn that off,
    and muting the logger would hide every other handler's requests too.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()

    def register(self, url: str) -> None:
        """Redact ``url`` from now on, as written and as httpx prints it (normalised)."""
        if not url:
            return
        self._secrets.add(url)
        with contextlib.suppress(httpx.InvalidURL):  # httpx refuses it before logging it
            self._secrets.add(str(httpx.URL(url)))

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001
            # A filter that raises would break the caller's request; a malformed record is
            # for logging's own error handling to report, further down.
            return True
        redacted = message
        # Longest first, so a URL is not half-replaced through a shorter form of itself.
        for secret in sorted(self._secrets, key=len, reverse=True):
            redacted = redacted.replace(secret, REDACTED)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True


#: One redactor per process, whatever the number of handler instances.
REDACTOR: Final = WebhookURLRedactor()


def protect(url: str) -> None:
    """Keep ``url`` out of httpx's request log."""
    REDACTOR.register(url)
    logging.getLogger("httpx").addFilter(REDACTOR)  # no-op when already there


class SlackHandler(BaseHandler):
    """Posts a summary of each finished job to a Slack incoming webhook.

    Options: ``webhook_url`` (``[handler.slack]`` or ``PIXHOOK_HANDLER_SLACK_WEBHOOK_URL``)
    overrides ``PIXHOOK_SLACK_WEBHOOK_URL``.
    """

    name: ClassVar[str] = "slack"
    events: ClassVar[frozenset[JobState]] = frozenset({
        JobState.SUCCEEDED, JobState.FAILED, JobState.MODERATION_FAILED, JobState.REJECTED,
    })
    after: ClassVar[tuple[str, ...]] = ("download",)

    def __init__(self, settings: Settings, options: Mapping[str, Any]) -> None:
        super().__init__(settings, options)
        protect(webhook_url(settings, options))

    def wants(self, job: Job, transition: Transition) -> bool:
        return bool(webhook_url(self.settings, self.options))

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        url = webhook_url(context.settings, {**self.options, **context.options})
        if not url:
            raise PermanentError("no Slack webhook URL configured (PIXHOOK_SLACK_WEBHOOK_URL)")
        protect(url)
        current = await context.jobs.get(job.id) or job
        message = build_message(current, transition, video_link(current, transition, context))
        await post(context.http, url, message, deadline=context.settings.outbound_timeout)
        context.logger.info("job %s: %s posted to Slack", job.id, transition.to_state.value)


def webhook_url(settings: Settings, options: Mapping[str, Any]) -> str:
    """The URL to post to: the handler's ``webhook_url`` option, else the setting."""
    configured = options.get("webhook_url") or settings.slack_webhook_url
    return str(configured or "").strip()


async def post(http: httpx.AsyncClient, url: str, message: Mapping[str, Any], *,
               deadline: float) -> None:
    """Send ``message`` and translate Slack's answer into the handler's ways of ending; the
    whole exchange takes at most ``deadline`` seconds (0: no limit)."""
    try:
        async with asyncio.timeout(deadline or None):
            async with http.stream("POST", url, json=message, headers=IDENTITY,
                                   timeout=REQUEST_TIMEOUT_SECONDS) as response:
                body = b"" if response.is_success else await read_capped(response)
    except TimeoutError:
        raise SlackDeliveryError(f"Slack sent no whole answer within {deadline:g} s "
                                 "(PIXHOOK_OUTBOUND_TIMEOUT)") from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL):
        raise PermanentError("the Slack webhook URL is not a valid http(s) URL") from None
    except httpx.HTTPError as exc:
        # ``from None``, not ``from exc``: the worker logs tracebacks, a chained cause would
        # be printed with its text, and an httpx error's text may name the URL (an
        # HTTPStatusError's always does). The class name is enough to tell what went wrong.
        raise SlackDeliveryError(f"Slack request failed: {type(exc).__name__}") from None
    if response.is_success:
        return
    answer = _answer(body, url)
    if response.status_code == 429:
        raise Retry(after=_retry_after(response), reason=f"Slack rate limit: {answer}")
    if response.status_code >= 500:
        raise SlackDeliveryError(f"Slack answered HTTP {response.status_code}: {answer}",
                                 status=response.status_code)
    raise PermanentError(f"Slack refused the message: HTTP {response.status_code}: {answer}")


def _answer(body: bytes, url: str) -> str:
    """Slack's short answer (``no_service``, ``invalid_payload``), fit for an error message:
    the URL redacted before the text is cut, so no part of it survives."""
    text = body.decode("utf-8", "replace").replace(url, REDACTED)
    return excerpt(text, ANSWER_MAX_CHARS) or "(empty)"


def _retry_after(response: httpx.Response) -> float:
    seconds = retry_after_seconds(response.headers.get("retry-after"))
    return DEFAULT_RETRY_AFTER_SECONDS if seconds is None else seconds


def video_link(job: Job, transition: Transition,
               context: HandlerContext) -> tuple[str, str] | None:
    """``(url, label)``: pixhook's signed link when the video is stored here and pixhook has a
    public URL, else PixVerse's; ``None`` when there is neither."""
    if job.media_path:
        own = media_url(context.settings, job.id)
        if own:
            ttl = format_duration(context.settings.media_link_ttl)
            return own, f"Download the video (link valid for {ttl})"
    pixverse = reported_video(transition).url
    return (pixverse, "Open the video on PixVerse") if pixverse else None


# -- the message ---------------------------------------------------------------------------

def build_message(job: Job, transition: Transition,
                  link: tuple[str, str] | None) -> dict[str, Any]:
    """The Block Kit payload: ``text`` for notifications and old clients, ``blocks`` to show."""
    state = transition.to_state
    emoji = STATE_EMOJI.get(state, ":grey_question:")
    prompt = job_prompt(job)
    headline = f"{job.kind} {state.value}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": f"{emoji} {headline}",
                                    "emoji": True}},
    ]
    if prompt:
        blocks.append(_section(f"*Prompt*\n>{escape(prompt)}"))
    blocks.append({"type": "section", "fields": [_mrkdwn(f"*{label}*\n{value}")
                                                 for label, value in _facts(job, transition)]})
    if state is not JobState.SUCCEEDED and job.last_error:
        blocks.append(_section(f"*Error*\n>{escape(shorten(job.last_error, ERROR_MAX_CHARS))}"))
    if link:
        blocks.append(_section(_link_text(*link)))
    text = f"{emoji} {escape(headline)}" + (f": {escape(prompt)}" if prompt else "")
    return {"text": text, "blocks": blocks}


def _facts(job: Job, transition: Transition) -> list[tuple[str, str]]:
    state = transition.to_state
    facts = [("Kind", f"`{escape(job.kind)}`"),
             ("State", f"{STATE_EMOJI.get(state, '')} {state.value}".strip())]
    length = job.params.get("duration")
    if isinstance(length, int | float) and not isinstance(length, bool):
        facts.append(("Video length", format_duration(length)))
    facts.append(("Generation time", format_duration(transition.received_at - job.created_at)))
    credits = reported_video(transition).credits
    if credits is not None:
        facts.append(("Credits", str(credits)))
    facts.append(("Job", f"`{escape(job.id)}`"))
    return facts


def _link_text(url: str, label: str) -> str:
    target = escape(url).replace("|", "%7C")  # a bare ``|`` would end the link's URL part
    return f"<{target}|{escape(label)}>"


def _mrkdwn(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": text}


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": _mrkdwn(text)}


def job_prompt(job: Job) -> str:
    """The job's prompt (or its kind's equivalent), on one line and at most
    :data:`PROMPT_MAX_CHARS` long; ``""`` if it has none."""
    for key in PROMPT_PARAMS:
        value = job.params.get(key)
        if isinstance(value, str) and value.strip():
            return shorten(value, PROMPT_MAX_CHARS)
    return ""


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1].rstrip() + "…"


_CONTROL: Final = re.compile(r"[&<>]")
_ENTITIES: Final = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters, so a prompt
    cannot ping ``<!channel>`` or smuggle in a link."""
    return _CONTROL.sub(lambda match: _ENTITIES[match.group()], text)


def format_duration(seconds: float) -> str:
    """``72`` -> ``"1m 12s"``: the two most significant units, zeros dropped."""
    remaining = max(0, round(seconds))
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        parts.append((count, unit))
    first = next((i for i, (count, _) in enumerate(parts) if count), len(parts) - 1)
    return " ".join(f"{count}{unit}" for count, unit in parts[first:first + 2] if count) or "0s"

