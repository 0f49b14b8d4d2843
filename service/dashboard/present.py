"""What the dashboard shows of a job, a transition or a task: plain values for templates.

Pages and the live event stream render rows from the same :class:`JobRow`, so a row pushed
over server-sent events looks exactly like one rendered with the page.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlsplit

from service.handler_api import reported_video
from service.lifecycle import JobState, Outcome
from service.store import Job, Store, Transition

#: Longest prompt shown in the jobs list (the job page shows all of it).
PROMPT_CHARS: Final = 140
#: Param names that read as a job's prompt, first found wins.
_PROMPT_KEYS: Final = ("prompt", "sound_effect_content", "lip_sync_tts_content")
#: Credits cache size: one entry per finished job looked at, so bounded.
_CREDITS_CACHE_MAX: Final = 5000


def prompt_of(job: Job) -> str:
    for key in _PROMPT_KEYS:
        value = job.params.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def shorten(text: str, limit: int = PROMPT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def age(seconds_since_epoch: float, now: float | None = None) -> str:
    """``"12s"``, ``"4m"``, ``"3h"``, ``"2d"``: how long ago (the JavaScript keeps it fresh
    with the same rule)."""
    delta = max(0.0, (time.time() if now is None else now) - seconds_since_epoch)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if delta >= size:
            return f"{int(delta // size)}{unit}"
    return f"{int(delta)}s"


def clock(seconds_since_epoch: float | None) -> str:
    """An absolute UTC time, for titles and the timeline."""
    if seconds_since_epoch is None:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(seconds_since_epoch)) + " UTC"


def state_class(state: str) -> str:
    """The CSS badge class for a job or task state."""
    return "badge-" + state.replace("_", "-")


def callback_host(url: str | None) -> str | None:
    """Only the host of a callback URL: its path or query may carry a credential."""
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" if parts.hostname else None


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def pretty_payload(payload: str | None) -> str | None:
    if not payload:
        return None
    try:
        return pretty_json(json.loads(payload))
    except ValueError:
        return payload


@dataclasses.dataclass(frozen=True, slots=True)
class JobRow:
    """One line of the jobs list."""

    id: str
    kind: str
    state: str
    prompt: str
    created_at: float
    updated_at: float
    credits: int | None
    last_error: str | None

    @classmethod
    def of(cls, job: Job, credits: int | None) -> JobRow:
        return cls(id=job.id, kind=job.kind, state=job.state.value,
                   prompt=shorten(prompt_of(job)), created_at=job.created_at,
                   updated_at=job.updated_at, credits=credits, last_error=job.last_error)


def credits_of(transitions: Sequence[Transition]) -> int | None:
    """The credits PixVerse reported for a job (its submit answer or final status)."""
    for transition in reversed(transitions):
        if transition.outcome is Outcome.APPLIED:
            credits = reported_video(transition).credits
            if credits is not None:
                return credits
    return None


class CreditsBook:
    """Credits per job, read from its history. Once known (or the job finished without
    any), a job's credits never change, so they are remembered instead of read again."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._known: dict[str, int | None] = {}

    async def credits(self, job: Job) -> int | None:
        if job.id in self._known:
            return self._known[job.id]
        if job.state in (JobState.QUEUED, JobState.SUBMITTING):
            return None  # nothing has come back from PixVerse yet
        credits = credits_of(await self._store.list_transitions(job.id))
        if credits is not None or job.is_terminal:
            if len(self._known) >= _CREDITS_CACHE_MAX:
                self._known.pop(next(iter(self._known)))
            self._known[job.id] = credits
        return credits

    async def rows(self, jobs: list[Job]) -> list[JobRow]:
        return [JobRow.of(job, await self.credits(job)) for job in jobs]
