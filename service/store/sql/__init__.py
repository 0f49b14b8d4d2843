"""The store's SQL, looked up by name: written once, with dialect overrides where SQL differs.

``queries.sql`` holds every statement the store runs, each under a ``-- name: NAME`` line, with
``:name`` parameters. ``sqlite.sql`` and ``postgres.sql`` hold only what differs: whole
statements of the same name, and the small fragments that shared statements name in braces
(``{skip_locked}`` is ``FOR UPDATE SKIP LOCKED`` on PostgreSQL and nothing on SQLite). Lists of
states come from the :mod:`service.lifecycle` and record enums (``{active_states}``), so the
SQL never restates a rule the Python already holds. Migrations are files of the same kind under
``migrations/``.

>>> queries("postgres")["get_job"]
'SELECT * FROM jobs WHERE id = %(id)s'
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from importlib import resources
from typing import Final, Literal

from service.lifecycle import (
    ACTIVE_STATES,
    TERMINAL_STATES,
    JobState,
    Outcome,
    TransitionSource,
)
from service.store.records import DeliveryOutcome, TaskRunOutcome, TaskState

Dialect = Literal["sqlite", "postgres"]

_NAME_LINE: Final = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_BRACED: Final = re.compile(r"\{(\w+)\}")
#: ``:name`` but not ``::type`` (a PostgreSQL cast) nor a name inside a word.
_PARAMETER: Final = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")


def sql_list(values: Iterable[str]) -> str:
    """``('a', 'b')``, sorted, so an index's WHERE and a query's read the same wherever they
    are generated (SQLite matches a partial index to a query by that text). Our own enum
    values only, never user input."""
    return "(" + ", ".join(f"'{value}'" for value in sorted(values)) + ")"


#: The vocabularies the schema's CHECKs and the queries' IN lists are made from.
VOCABULARIES: Final = {
    "active_states": sql_list(ACTIVE_STATES),
    "terminal_states": sql_list(TERMINAL_STATES),
    "job_states": sql_list(JobState),
    "outcomes": sql_list(Outcome),
    "sources": sql_list(TransitionSource),
    "delivery_outcomes": sql_list(DeliveryOutcome),
    "task_states": sql_list(TaskState),
    "run_outcomes": sql_list(TaskRunOutcome),
}


def parse(text: str) -> dict[str, str]:
    """``{name: statement}`` from a file of ``-- name:`` blocks; comment lines and a final
    semicolon are dropped."""
    parts = _NAME_LINE.split(text)
    found: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        found[name] = "\n".join(lines).strip().removesuffix(";").strip()
    return found


def _read(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def expand(text: str, names: dict[str, str]) -> str:
    """Replace ``{name}`` with its statement or fragment, recursively. A brace pair holding
    anything but a word (``'{}'``, a JSON default) is left alone; an unknown word is a bug."""
    def one(match: re.Match[str]) -> str:
        return expand(names[match.group(1)], names)
    return _BRACED.sub(one, text)


def to_pyformat(text: str) -> str:
    """``:name`` parameters as psycopg's ``%(name)s`` (and a literal ``%`` doubled)."""
    return _PARAMETER.sub(r"%(\1)s", text.replace("%", "%%"))


class Queries(dict[str, str]):
    """A dialect's statements by name, expanded and in its driver's parameter style."""

    def __init__(self, dialect: Dialect, names: dict[str, str]) -> None:
        self.dialect = dialect
        self._names = names
        super().__init__({name: self.render(text) for name, text in names.items()})

    def render(self, text: str) -> str:
        """Expand and convert a statement built at run time (a filtered listing)."""
        return _render(self.dialect, expand(text, self._names))

    def script(self, name: str) -> str:
        """A migration, expanded (scripts take no parameters, so nothing is converted)."""
        return expand(_read(f"migrations/{name}.sql"), self._names)


@functools.lru_cache(maxsize=1024)
def _render(dialect: Dialect, text: str) -> str:
    return to_pyformat(text) if dialect == "postgres" else text


@functools.cache
def queries(dialect: Dialect) -> Queries:
    """Every statement for ``dialect``: the shared file, then the dialect's own on top."""
    names = {**VOCABULARIES, **parse(_read("queries.sql")), **parse(_read(f"{dialect}.sql"))}
    return Queries(dialect, names)


def migration_names() -> list[str]:
    """The migrations this code knows, in order (their file names)."""
    files = resources.files(__package__).joinpath("migrations").iterdir()
    return sorted(f.name.removesuffix(".sql") for f in files if f.name.endswith(".sql"))
