"""Telegram notifications through the Bot API: the video itself (``sendVideo``) when the job
succeeded, else, or when Telegram cannot fetch it, a message with the link (``sendMessage``).

``sendVideo`` is given the video's URL (pixhook's signed link when the video is stored here,
else PixVerse's) and a caption; Telegram fetches it (up to 20 MB by URL) and answers 400 when
it cannot (too big, unreachable, not a video), which is when the handler falls back to
``sendMessage`` with the caption and the link. Texts are plain (no ``parse_mode``), so a
prompt cannot change the formatting; a caption is at most 1024 characters, a message 4096.

Options (``[handler.telegram]`` or ``PIXHOOK_HANDLER_TELEGRAM_*``): ``bot_token`` (required; a
credential: it is part of every method's URL), ``chat_id`` (required: a chat's number or
``@channelusername``), ``api_url`` (default ``https://api.telegram.org``; a local Bot API
server or a stand-in). Telegram answers 429 with ``parameters.retry_after``: the run is
retried after it. Endings and redaction: :mod:`handlers.chat`.
"""

from __future__ import annotations

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

DEFAULT_API_URL: Final = "https://api.telegram.org"
CAPTION_MAX_CHARS: Final = 1024
MESSAGE_MAX_CHARS: Final = 4096


class TelegramHandler(chat.ChatHandler):
    """Sends each finished job's video (or a message with its link) to a Telegram chat."""

    name: ClassVar[str] = "telegram"
    required: ClassVar[tuple[str, ...]] = ("bot_token", "chat_id")

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        options = {**self.options, **context.options}
        token, chat_id = chat.option(options, "bot_token"), chat.option(options, "chat_id")
        if not token or not chat_id:
            raise PermanentError("[handler.telegram] needs bot_token and chat_id")
        protect(token)
        base = (chat.option(options, "api_url") or DEFAULT_API_URL).rstrip("/")
        current = await context.jobs.get(job.id) or job
        link = video_link(current, transition, context)
        text = summary(current, transition)

        async def call(method: str, body: dict[str, Any]) -> None:
            await chat.send(context.http, f"{base}/bot{token}/{method}", service="Telegram",
                            secret=token, json=body,
                            deadline=context.settings.outbound_timeout)

        if link and transition.to_state is JobState.SUCCEEDED:
            try:
                await call("sendVideo", {"chat_id": chat_id, "video": link[0],
                                         "caption": chat.cut(text, CAPTION_MAX_CHARS),
                                         "supports_streaming": True})
            except chat.ChatRefusedError as exc:
                if exc.status != 400:  # 401/403/404: the bot or chat is wrong; no fallback helps
                    raise
                context.logger.info("job %s: Telegram refused the video (%s); sending the link",
                                    job.id, exc.answer)
            else:
                context.logger.info("job %s: video sent to Telegram", job.id)
                return
        message = text + (f"\n{link[1]}: {link[0]}" if link else "")
        await call("sendMessage", {"chat_id": chat_id, "text": chat.cut(message, MESSAGE_MAX_CHARS),
                                   "link_preview_options": {"is_disabled": False}})
        context.logger.info("job %s: %s sent to Telegram", job.id, transition.to_state.value)


def summary(job: Job, transition: Transition) -> str:
    """The plain text of a caption or message: headline, prompt, facts, error."""
    lines = [f"{job.kind} {transition.to_state.value}"]
    prompt = job_prompt(job)
    if prompt:
        lines.append(prompt)
    lines += [f"{label}: {value}" for label, value in chat.facts(job, transition)
              if label != "State"]
    if transition.to_state is not JobState.SUCCEEDED and job.last_error:
        lines.append("Error: " + shorten(job.last_error, ERROR_MAX_CHARS))
    return "\n".join(lines)
