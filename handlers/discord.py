"""Discord notifications: one embed per finished job, to a channel's webhook, with the MP4
attached when it is stored here and small enough.

The embed (Discord's "Execute Webhook" body) carries the prompt as its description, the state
in its title and colour, the facts as inline fields, the error when the job did not succeed,
and the video link (pixhook's signed link when the video is stored here, else PixVerse's) as
the embed's ``url``. ``allowed_mentions`` is empty, so a prompt cannot ping ``@everyone``.

**The attachment.** When the download handler has stored the video and it is at most
``max_attachment_bytes`` (option; default 10 MiB, Discord's upload limit for a server without
boosts), the request is multipart: ``payload_json`` plus ``files[0]``, which the embed does
not depend on (the link stays, for the larger copies and for clients that do not play
attachments). A larger or missing file is simply not attached. Discord answers 413 to a body
over the server's limit; set the option to what your server allows.

Options (``[handler.discord]`` or ``PIXHOOK_HANDLER_DISCORD_*``): ``webhook_url`` (required;
a credential), ``max_attachment_bytes``. Endings and redaction: :mod:`handlers.chat`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Final

import httpx

from service.handler_api import (
    HandlerContext,
    Job,
    JobState,
    PermanentError,
    Transition,
)

from . import chat
from .slack import job_prompt, protect, shorten, video_link

#: Discord's upload limit for a server without boosts (bytes).
DEFAULT_MAX_ATTACHMENT_BYTES: Final = 10 * 1024 * 1024
#: Embed colours by state (green, red, orange, grey).
STATE_COLOURS: Final[Mapping[JobState, int]] = {
    JobState.SUCCEEDED: 0x2ECC71,
    JobState.FAILED: 0xE74C3C,
    JobState.MODERATION_FAILED: 0xE67E22,
    JobState.REJECTED: 0xE67E22,
}
#: Discord's limit for an embed field's value.
FIELD_VALUE_MAX_CHARS: Final = 1024


class DiscordHandler(chat.ChatHandler):
    """Posts an embed for each finished job to a Discord webhook."""

    name: ClassVar[str] = "discord"

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        options = {**self.options, **context.options}
        url = chat.option(options, "webhook_url")
        if not url:
            raise PermanentError("no Discord webhook URL configured ([handler.discord] "
                                 "webhook_url)")
        protect(url)
        current = await context.jobs.get(job.id) or job
        link = video_link(current, transition, context)
        message = build_message(current, transition, link[0] if link else None)
        video = await _attachment(current, transition, max_attachment_bytes(options))
        request: dict[str, Any]
        if video is None:
            request = {"json": message}
        else:
            message["attachments"] = [{"id": 0, "filename": video[0]}]
            request = {"data": {"payload_json": json.dumps(message)},
                       "files": {"files[0]": (video[0], video[1], "video/mp4")}}
        # ``wait=true``: Discord answers only once the message exists, so a refusal is seen.
        try:
            target = str(httpx.URL(url).copy_merge_params({"wait": "true"}))
        except httpx.InvalidURL:
            raise PermanentError("the Discord webhook URL is not a valid URL") from None
        await chat.send(context.http, target, service="Discord", secret=url,
                        deadline=context.settings.outbound_timeout, **request)
        context.logger.info("job %s: %s posted to Discord%s", job.id, transition.to_state.value,
                            " with the video" if video else "")


def max_attachment_bytes(options: Mapping[str, Any]) -> int:
    value = options.get("max_attachment_bytes", DEFAULT_MAX_ATTACHMENT_BYTES)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PermanentError("[handler.discord] max_attachment_bytes must be a number of "
                             f"bytes, not {value!r}") from None


async def _attachment(job: Job, transition: Transition,
                      limit: int) -> tuple[str, bytes] | None:
    """``(filename, bytes)`` of the stored video when it is there and at most ``limit``."""
    if transition.to_state is not JobState.SUCCEEDED or not job.media_path:
        return None
    path = Path(job.media_path)
    try:
        if path.stat().st_size > limit:
            return None
        return f"{job.id}.mp4", await asyncio.to_thread(path.read_bytes)
    except OSError:
        return None  # gone since it was recorded: the link still says where it was


def build_message(job: Job, transition: Transition, link: str | None) -> dict[str, Any]:
    """The Execute Webhook body: one embed, no mentions."""
    state = transition.to_state
    embed: dict[str, Any] = {
        "title": shorten(f"{job.kind} {state.value}", 256),
        "color": STATE_COLOURS.get(state, 0x95A5A6),
        "fields": [{"name": label, "value": shorten(value, FIELD_VALUE_MAX_CHARS),
                    "inline": True} for label, value in chat.facts(job, transition)],
        "timestamp": datetime.fromtimestamp(transition.received_at, UTC).isoformat(),
    }
    prompt = job_prompt(job)
    if prompt:
        embed["description"] = prompt
    if link:
        embed["url"] = link
        embed["fields"].append({"name": "Video", "value": shorten(link, FIELD_VALUE_MAX_CHARS),
                                "inline": False})
    if state is not JobState.SUCCEEDED and job.last_error:
        embed["fields"].append({"name": "Error", "inline": False,
                                "value": shorten(job.last_error, FIELD_VALUE_MAX_CHARS)})
    return {"embeds": [embed], "allowed_mentions": {"parse": []}}
