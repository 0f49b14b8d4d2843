"""What every ``pixhook`` command shares for output: exit codes, colour and error lines.

Exit codes (the README's CLI section has the table):

* ``0`` done;
* ``1`` the answer is no: a job (or a handler waited for) failed, an unknown id;
* ``2`` usage, connection or configuration problems (click's usage errors are 2 too);
* ``3`` ``--wait`` timed out (the job goes on);
* ``130`` interrupted by Ctrl-C (128 + SIGINT, as shells report it; the job goes on).

Colour only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org). Command
modules (``cli_listen`` and others) import these instead of defining their own.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import IO, Any, Final, NoReturn

import click

OK: Final = 0
FAILED: Final = 1
USAGE: Final = 2
TIMED_OUT: Final = 3
INTERRUPTED: Final = 130

#: Words painted green, red or (anything else) yellow: job, task and run states, outcomes.
GOOD: Final = frozenset({"succeeded", "applied", "ok"})
BAD: Final = frozenset({"failed", "moderation_failed", "rejected", "deleted", "dead", "retry",
                        "stale"})


def use_colour(stream: IO[str] | None = None,
               environ: Mapping[str, str] | None = None) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set to anything non-empty."""
    stream = stream if stream is not None else sys.stdout
    environ = environ if environ is not None else os.environ
    return not environ.get("NO_COLOR") and stream.isatty()


def paint(text: str, word: str | None = None, *, colour: bool | None = None) -> str:
    """``text`` coloured by ``word`` (default: the text itself) when colour is on."""
    if not (use_colour() if colour is None else colour):
        return text
    word = text.strip() if word is None else word
    shade = "green" if word in GOOD else "red" if word in BAD else "yellow"
    return click.style(text, fg=shade)


def echo(text: str = "", *, err: bool = False) -> None:
    """``click.echo`` that keeps colour exactly when :func:`use_colour` says so."""
    stream = sys.stderr if err else sys.stdout
    click.echo(text, err=err, color=use_colour(stream))


def fail(message: str, code: int = USAGE) -> NoReturn:
    """One line on stderr (``error:`` in red on a terminal), then exit with ``code``."""
    label = click.style("error:", fg="red", bold=True) if use_colour(sys.stderr) else "error:"
    click.echo(f"{label} {message}", err=True, color=use_colour(sys.stderr))
    sys.exit(code)


class PixhookGroup(click.Group):
    """The command group: Ctrl-C anywhere exits 130 with one line, not click's "Aborted!"
    and 1 (the code of a failed job). Commands with more to say (``submit --wait``: the job
    goes on) catch it themselves first."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("\ninterrupted", err=True)
            sys.exit(INTERRUPTED)
