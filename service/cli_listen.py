"""``pixhook listen``: tail transitions and task runs live from ``GET /api/events`` (like
``stripe listen``), through the SDK, so a dropped connection or a restarted service is
resumed after the last event shown: nothing missed, nothing twice.

Exit codes (as the rest of the CLI): 2 for usage or connection problems (a bad filter, a wrong
token, no service at ``PIXHOOK_URL``), 130 on Ctrl-C. It otherwise runs until stopped.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Any, Final

import click
import httpx

from pixhook_sdk import Event, Pixhook, StreamError
from service.cli import _fail, _settings, cli
from service.lifecycle import JobState

#: Exit status after Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED: Final = 130
_GOOD: Final = frozenset({"succeeded", "applied"})
_BAD: Final = frozenset({"failed", "moderation_failed", "rejected", "deleted", "dead",
                         "retry"})


def use_colour(stream: IO[str], environ: dict[str, str] | os._Environ[str]) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org)."""
    return not environ.get("NO_COLOR") and stream.isatty()


def _paint(text: str, word: str, colour: bool) -> str:
    if not colour:
        return text
    shade = "green" if word in _GOOD else "red" if word in _BAD else "yellow"
    return click.style(text, fg=shade)


def line(event: Event, colour: bool) -> str:
    """One human line: when, which job, what happened."""
    when = event.time[11:23]  # HH:MM:SS.mmm of the RFC 3339 time
    prefix = f"{when}  #{event.sequence:<6} {event.job_id}  "
    data: dict[str, Any] = event.data
    if event.is_transition:
        step = data["transition"]
        arrow = f"{step['from_state'] or '-'} -> {step['to_state']}"
        said = f"({step['outcome']}, {step['source']})"
        word = step["to_state"] if step["outcome"] == "applied" else step["outcome"]
        return prefix + _paint(arrow, word, colour) + " " + said
    run = data["task_run"]
    what = f"task {run['handler']} attempt {run['attempt']}: {run['outcome']}"
    error = f"  {run['error']}" if run.get("error") else ""
    return prefix + _paint(what, run["outcome"], colour) + error


@cli.command()
@click.option("--job", help="Only this job's events.")
@click.option("--kind", help="Only jobs of this kind.")
@click.option("--state", type=click.Choice([s.value for s in JobState]),
              help="Only events after which the job is in this state.")
@click.option("--type", "kind_of_event", type=click.Choice(["transition", "task_run"]),
              help="Only transitions, or only task runs.")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE",
              help="Only jobs with this label (repeatable).")
@click.option("--after", type=click.IntRange(min=0), default=None,
              help="Start after this event id (0: the whole history); default: new events.")
@click.option("--json", "as_json", is_flag=True, help="One JSON event document per line.")
def listen(job: str | None, kind: str | None, state: str | None, kind_of_event: str | None,
           labels: tuple[str, ...], after: int | None, as_json: bool) -> None:
    """Tail transitions and task runs live, until Ctrl-C (exit 130).

    Example: pixhook listen --label app=shop --type transition
    """
    settings = _settings()
    if not settings.api_token:
        _fail("PIXHOOK_API_TOKEN is not set; the service refuses /api calls without it")
    wanted: dict[str, str] = {}
    for given in labels:
        name, equals, value = given.partition("=")
        if not equals or not name:
            _fail(f"--label takes KEY=VALUE, not {given!r}")
        wanted[name] = value
    _probe(settings.url, settings.api_token)
    colour = use_colour(sys.stdout, os.environ)
    try:
        with Pixhook(settings.url, settings.api_token) as client:
            for event in client.events(after=after, job=job, kind=kind, state=state,
                                       type=kind_of_event, labels=wanted):
                text = (json.dumps(event.document, separators=(",", ":")) if as_json
                        else line(event, colour))
                click.echo(text)
    except KeyboardInterrupt:
        click.echo("stopped listening", err=True)
        sys.exit(INTERRUPTED)
    except StreamError as exc:
        _fail(f"the event stream refused: {exc}")


def _probe(url: str, token: str) -> None:
    """Fail early, with the fix, when the service cannot be reached or refuses the token."""
    try:
        answer = httpx.get(f"{url.rstrip('/')}/api/events", params={"limit": "1"},
                           headers={"Authorization": f"Bearer {token}"}, timeout=10)
    except httpx.HTTPError as exc:
        _fail(f"cannot reach pixhook at {url} ({type(exc).__name__}); is `pixhook serve` "
              "running, and is PIXHOOK_URL right?")
    if answer.status_code == 401:
        _fail("the service refused the API token (PIXHOOK_API_TOKEN)")
    if answer.status_code != 200:
        _fail(f"{url}/api/events answered {answer.status_code}; is PIXHOOK_URL pixhook's?")

