"""Microsoft Teams notifications: an Adaptive Card per finished job, to a Workflows webhook.

Teams' Office 365 connectors (incoming webhooks) are being retired; their replacement is a
Power Automate / Teams *Workflows* flow started by "When a Teams webhook request is received",
which posts the Adaptive Cards it is sent. It takes the same envelope the connectors took::

    {"type": "message",
     "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive",
                      "contentUrl": null,
                      "content": {"type": "AdaptiveCard", "version": "1.4", "body": [...]}}]}

and answers ``202 Accepted`` (the flow runs after). The card has the state as its heading, the
prompt, a ``FactSet`` of the facts, the error when the job did not succeed, and an
``Action.OpenUrl`` to the video. Card text is plain (``TextBlock`` renders a subset of
Markdown, so a prompt's ``[x](y)`` could make a link: it is escaped).

Options (``[handler.teams]`` or ``PIXHOOK_HANDLER_TEAMS_*``): ``webhook_url`` (required; the
flow's URL carries its signature, a credential). Endings and redaction: :mod:`handlers.chat`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar, Final

from service.handler_api import (
    HandlerContext,
    Job,
    JobState,
    PermanentError,
    Transition,
)

from . import chat
from .slack import ERROR_MAX_CHARS, job_prompt, protect, shorten, video_link

#: Adaptive Card schema version: 1.4 is what Teams renders on every client (1.5 is desktop
#: and web only).
CARD_VERSION: Final = "1.4"
CARD_CONTENT_TYPE: Final = "application/vnd.microsoft.card.adaptive"
#: Adaptive Card colours by state (``TextBlock.color``).
STATE_COLOURS: Final[Mapping[JobState, str]] = {
    JobState.SUCCEEDED: "Good",
    JobState.FAILED: "Attention",
    JobState.MODERATION_FAILED: "Warning",
    JobState.REJECTED: "Warning",
}
_MARKDOWN: Final = re.compile(r"([\\`*_{}\[\]()#+\-.!<>])")


class TeamsHandler(chat.ChatHandler):
    """Posts an Adaptive Card for each finished job to a Teams Workflows webhook."""

    name: ClassVar[str] = "teams"

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        url = chat.option({**self.options, **context.options}, "webhook_url")
        if not url:
            raise PermanentError("no Teams webhook URL configured ([handler.teams] webhook_url)")
        protect(url)
        current = await context.jobs.get(job.id) or job
        link = video_link(current, transition, context)
        message = build_message(current, transition, link)
        await chat.send(context.http, url, service="Teams", json=message,
                        deadline=context.settings.outbound_timeout)
        context.logger.info("job %s: %s posted to Teams", job.id, transition.to_state.value)


def escape(text: str) -> str:
    """Escape the Markdown ``TextBlock`` would render."""
    return _MARKDOWN.sub(r"\\\1", text)


def build_message(job: Job, transition: Transition,
                  link: tuple[str, str] | None) -> dict[str, Any]:
    """The Workflows webhook body: a message with one Adaptive Card attachment."""
    state = transition.to_state
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": escape(f"{job.kind} {state.value}"), "size": "Large",
         "weight": "Bolder", "color": STATE_COLOURS.get(state, "Default"), "wrap": True},
    ]
    prompt = job_prompt(job)
    if prompt:
        body.append({"type": "TextBlock", "text": escape(prompt), "wrap": True,
                     "isSubtle": True})
    body.append({"type": "FactSet", "facts": [{"title": label, "value": escape(value)}
                                              for label, value in chat.facts(job, transition)]})
    if state is not JobState.SUCCEEDED and job.last_error:
        body.append({"type": "TextBlock", "color": "Attention", "wrap": True,
                     "text": escape(shorten(job.last_error, ERROR_MAX_CHARS))})
    card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                            "type": "AdaptiveCard", "version": CARD_VERSION, "body": body}
    if link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": link[1], "url": link[0]}]
    return {"type": "message",
            "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None,
                             "content": card}]}
