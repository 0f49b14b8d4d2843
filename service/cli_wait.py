"""``pixhook submit --wait``: follow a job and its ``--then`` chain through pixhook's ``/api``
(never PixVerse) until everything waited for has settled.

What is waited for, per job of the chain (the job, then each follow-up job it leads to):

* ``--wait`` (``--wait=chain``): the job, its ``download`` task (the file is what one waits
  for) and its ``followup`` task (which makes the next job of the chain);
* ``--wait=handlers``: the job and every handler task it has (Slack, forward, ...).

The answer is 0 only when every job succeeded and no task waited for is dead; a dead task
(after its retries) or a failed job is 1; time running out is 3; the job goes on either way.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import click

from service.cli_output import FAILED, OK, use_colour

TERMINAL: Final = frozenset({"succeeded", "failed", "moderation_failed", "rejected",
                             "deleted"})
#: The handlers plain ``--wait`` waits for: the file, and the next step of the chain.
CHAIN_HANDLERS: Final = frozenset({"download", "followup"})
SETTLED: Final = frozenset({"succeeded", "dead"})
POLL_SECONDS: Final = 0.5

#: ``call(method, path, **httpx_kwargs)`` -> the decoded JSON answer (the CLI's client).
Call = Callable[..., Any]


class TimedOut(Exception):
    """The deadline passed; ``job_id`` is the job being waited for, ``doing`` what it did."""

    def __init__(self, job_id: str, doing: str) -> None:
        super().__init__(f"job {job_id} is still {doing}")
        self.job_id = job_id
        self.doing = doing


@dataclass
class Outcome:
    """The chain's jobs as ``GET /api/jobs/{id}`` shows them, finished, and the code."""

    jobs: list[dict[str, Any]] = field(default_factory=list)
    code: int = OK


class Progress:
    """What is being waited for, on stderr: one line rewritten in place on a terminal, a
    line per change otherwise. No percentage: how long generation takes is not known."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._shown = ""
        self._since = time.monotonic()

    def show(self, text: str) -> None:
        if text != self._shown:
            self._since = time.monotonic()
            if not self._tty:
                click.echo(text, err=True)
        self._shown = text
        if self._tty:
            seconds = int(time.monotonic() - self._since)
            line = f"{text} ({seconds} s)"
            click.echo(f"\r\x1b[K{click.style(line, dim=True) if use_colour(sys.stderr) else line}",
                       err=True, nl=False)

    def close(self) -> None:
        if self._tty and self._shown:
            click.echo("\r\x1b[K", err=True, nl=False)


def wait(call: Call, job_id: str, timeout: float, *, handlers: bool) -> Outcome:
    """Follow ``job_id`` and the jobs its ``then`` steps make; raise :class:`TimedOut`."""
    deadline = time.monotonic() + timeout
    progress = Progress()
    outcome = Outcome()
    try:
        next_id: str | None = job_id
        while next_id is not None:
            job = _job(call, next_id, deadline, progress)
            tasks = _tasks(call, job, deadline, progress, handlers=handlers)
            outcome.jobs.append(call("GET", f"/api/jobs/{job['id']}"))
            bad = job["state"] != "succeeded" or any(t["state"] == "dead" for t in tasks)
            if bad:
                outcome.code = FAILED
                break
            next_id = _child(call, job, deadline, progress) if job["then"] else None
    finally:
        progress.close()
    return outcome


def _job(call: Call, job_id: str, deadline: float, progress: Progress) -> dict[str, Any]:
    while True:
        job: dict[str, Any] = call("GET", f"/api/jobs/{job_id}")
        progress.show(f"job {job_id} {job['state']}")
        if job["state"] in TERMINAL:
            return job
        _pause(deadline, job_id, job["state"])


def _tasks(call: Call, job: dict[str, Any], deadline: float, progress: Progress, *,
           handlers: bool) -> list[dict[str, Any]]:
    """The job's tasks waited for, once each has succeeded or is dead."""
    while True:
        page: dict[str, Any] = call("GET", "/api/tasks", params={"job_id": job["id"]})
        wanted = [t for t in page["tasks"] if handlers or t["handler"] in CHAIN_HANDLERS]
        waiting = [t["handler"] for t in wanted if t["state"] not in SETTLED]
        if not waiting:
            return wanted
        doing = f"running {', '.join(sorted(set(waiting)))}"
        progress.show(f"job {job['id']} {job['state']}, {doing}")
        _pause(deadline, job["id"], doing)


def _child(call: Call, job: dict[str, Any], deadline: float, progress: Progress) -> str:
    """The id of the job the ``followup`` task made from the first ``then`` step (found by
    its trace id, which the follow-up handler derives from the parent's)."""
    from handlers.followup import step_trace_id

    trace = step_trace_id(job["trace_id"], 0)
    while True:
        page: dict[str, Any] = call("GET", "/api/jobs", params={"q": trace, "limit": "5"})
        for found in page["jobs"]:
            if found.get("parent_job_id") == job["id"]:
                return str(found["id"])
        progress.show(f"job {job['id']} succeeded, submitting its next step")
        _pause(deadline, job["id"], "submitting its next step")


def _pause(deadline: float, job_id: str, doing: str) -> None:
    if time.monotonic() > deadline:
        raise TimedOut(job_id, doing)
    time.sleep(POLL_SECONDS)


def file_of(job: dict[str, Any]) -> str | None:
    """What to print for the job's video: its link (``media_url``), or why there is none."""
    if job.get("media_url"):
        return str(job["media_url"])
    downloads = [t for t in job.get("tasks", []) if t["handler"] == "download"]
    if downloads and downloads[-1]["state"] == "succeeded":
        return "downloaded (set PIXHOOK_PUBLIC_URL on the service for a link)"
    return None
