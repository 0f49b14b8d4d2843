"""Notifications to the long tail of chat and push services through Apprise
(https://github.com/caronc/apprise: Matrix, Mattermost, Rocket.Chat, ntfy, Pushover, email,
Gotify, Signal and a hundred more, each addressed by a URL such as
``mmosts://host/token`` or ``ntfys://topic``).

One plain-text notification per finished job: a title (kind and state), the prompt, the facts,
the error when it did not succeed, and the video link. Apprise is a synchronous library that
does its own HTTP, so the call runs on a worker thread, bounded by
``PIXHOOK_OUTBOUND_TIMEOUT`` (Apprise's own per-URL timeouts, ``?cto=`` and ``?rto=``, bound
each request). Apprise says only whether every service took the message, not why one did not,
so a failure is a ``TransientError`` and the worker retries with backoff; a retry notifies
again the services that did take it (at least once, like every task).

Needs the ``apprise`` extra (``pip install 'pixhook[apprise]'``); without it a run ends with a
``PermanentError`` that says so, and nothing else of pixhook imports Apprise.

Options (``[handler.apprise]`` or ``PIXHOOK_HANDLER_APPRISE_*``): ``urls`` (required: one
Apprise URL, several separated by spaces or commas, or a list). They carry credentials: they
are never logged or quoted in an error.
"""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

from service.handler_api import (
    BaseHandler,
    HandlerContext,
    Job,
    JobState,
    PermanentError,
    TransientError,
    Transition,
)

from . import chat
from .slack import ERROR_MAX_CHARS, job_prompt, shorten, video_link


class AppriseDeliveryError(TransientError):
    """Apprise reported that at least one service did not take the notification."""


class AppriseHandler(BaseHandler):
    """Sends each finished job's summary to every configured Apprise URL."""

    name: ClassVar[str] = "apprise"
    events: ClassVar[frozenset[JobState]] = chat.CHAT_EVENTS
    after: ClassVar[tuple[str, ...]] = ("download",)

    def wants(self, job: Job, transition: Transition) -> bool:
        return bool(apprise_urls(self.options))

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        urls = apprise_urls({**self.options, **context.options})
        if not urls:
            raise PermanentError("no Apprise URL configured ([handler.apprise] urls)")
        try:
            # The optional extra, imported only by a run that needs it.
            import apprise
        except ImportError:
            raise PermanentError("the apprise handler needs the apprise package: "
                                 "pip install 'pixhook[apprise]'") from None
        notifier = apprise.Apprise()
        # Apprise loads its service plugins on first use, and one imports the deprecated
        # ``imghdr`` on Python 3.11-3.12: not ours to warn about.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            for number, url in enumerate(urls, 1):
                if not notifier.add(url):
                    raise PermanentError("[handler.apprise] urls: Apprise does not understand "
                                         f"URL number {number}")
        current = await context.jobs.get(job.id) or job
        title, body = build_message(current, transition, video_link(current, transition,
                                                                    context))
        kind = (apprise.NotifyType.SUCCESS if transition.to_state is JobState.SUCCEEDED
                else apprise.NotifyType.FAILURE)
        deadline = context.settings.outbound_timeout
        try:
            async with asyncio.timeout(deadline or None):
                delivered = await asyncio.to_thread(notifier.notify, body=body, title=title,
                                                    notify_type=kind)
        except TimeoutError:
            raise AppriseDeliveryError(f"Apprise did not finish within {deadline:g} s "
                                       "(PIXHOOK_OUTBOUND_TIMEOUT)") from None
        if not delivered:
            raise AppriseDeliveryError(f"Apprise could not notify every one of {len(urls)} "
                                       "URL(s); see Apprise's log for which")
        context.logger.info("job %s: %s sent through Apprise", job.id,
                            transition.to_state.value)


def apprise_urls(options: Mapping[str, Any]) -> list[str]:
    """The ``urls`` option as a list: a list as given, a string split at spaces and commas."""
    value = options.get("urls") or ""
    items = value if isinstance(value, list | tuple) else re.split(r"[\s,]+", str(value))
    return [str(item).strip() for item in items if str(item).strip()]


def build_message(job: Job, transition: Transition,
                  link: tuple[str, str] | None) -> tuple[str, str]:
    """``(title, body)`` in plain text."""
    lines = []
    prompt = job_prompt(job)
    if prompt:
        lines.append(prompt)
    lines += [f"{label}: {value}" for label, value in chat.facts(job, transition)]
    if transition.to_state is not JobState.SUCCEEDED and job.last_error:
        lines.append("Error: " + shorten(job.last_error, ERROR_MAX_CHARS))
    if link:
        lines.append(f"{link[1]}: {link[0]}")
    return f"{job.kind} {transition.to_state.value}", "\n".join(lines)
