"""Store fixtures: every store test runs against SQLite and against PostgreSQL.

``store`` and ``raw`` are parametrised by ``backend`` (ids ``sqlite`` and ``postgres``). SQLite
gets a fresh file per test; PostgreSQL a fresh schema (``t_<random>``, selected through the
connection's ``search_path``), dropped afterwards. PostgreSQL comes from
``PIXHOOK_TEST_POSTGRES_DSN``; when no server answers there, its tests are skipped, unless
``PIXHOOK_REQUIRE_POSTGRES=1`` (set by ``.ci/run``) makes that a failure.

The store's task planner is bound when it is built. ``store`` and ``sqlite_store`` have none (no
transition queues a task); a test that needs tasks binds one (``store.bind(planner=...)``), or
the ``planner`` fixture, a :class:`~tests.support.planner.Planner` it can change between calls.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from service.store import Store, TaskPlanner
from service.store.sqlite import SQLiteStore
from tests.support.planner import Planner

DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"


class FakeClock:
    """A settable clock for the store's ``created_at`` and friends."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "pixhook.db"


# -- PostgreSQL ------------------------------------------------------------------------------


def postgres_dsn() -> str:
    return os.environ.get("PIXHOOK_TEST_POSTGRES_DSN") or DEFAULT_POSTGRES_DSN


#: What a replica writing events holds until it commits (``service.store.event_log.EVENTS_LOCK``
#: through ``advisory_lock`` in ``sql/postgres.sql``): run it on another connection to play one.
HOLD_EVENTS_LOCK = ("SELECT pg_advisory_xact_lock(hashtextextended(current_schema() || ':' || "
                    "'events', 0))")


def with_search_path(dsn: str, schema: str) -> str:
    """``dsn`` with ``options=-c search_path=SCHEMA`` added to its query."""
    parts = urllib.parse.urlsplit(dsn)
    query = urllib.parse.parse_qsl(parts.query)
    query.append(("options", f"-c search_path={schema}"))
    return urllib.parse.urlunsplit(parts._replace(
        query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The DSN of a PostgreSQL server that answers, or a skip (a failure under .ci/run)."""
    dsn = postgres_dsn()
    try:
        import psycopg
    except ImportError:
        reason = "psycopg is not installed (pip install 'pixhook[postgres]')"
    else:
        try:
            with psycopg.connect(dsn, connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            return dsn
        except psycopg.Error as exc:
            detail = " ".join(str(exc).split())
            reason = (f"PostgreSQL not reachable at {dsn}; set PIXHOOK_TEST_POSTGRES_DSN "
                      f"({type(exc).__name__}: {detail})")
    if os.environ.get("PIXHOOK_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"PIXHOOK_REQUIRE_POSTGRES=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def postgres_schema(postgres_server: str) -> Iterator[str]:
    """A DSN whose tables live in a fresh, empty schema of their own."""
    import psycopg

    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield with_search_path(postgres_server, schema)
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


# -- both backends ---------------------------------------------------------------------------


class RawDatabase:
    """A second, plain connection to the database: what another process would see.

    SQL uses ``?`` placeholders whatever the backend.
    """

    def __init__(self, conn: Any, placeholder: str) -> None:
        self.conn = conn
        self._placeholder = placeholder

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        rows = self.conn.execute(sql.replace("?", self._placeholder), params).fetchall()
        return [tuple(row) for row in rows]

    def value(self, sql: str, *params: object) -> Any:
        row = self.conn.execute(sql.replace("?", self._placeholder), params).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self.conn.close()


@dataclass
class Backend:
    """Where a test's data lives, and how to reach it again."""

    name: str
    #: A SQLite file path or a PostgreSQL DSN (with the test's search_path).
    location: str

    @property
    def url(self) -> str:
        """The location as ``connect()`` takes it (a subprocess opens the store this way)."""
        return self.location if self.name == "postgres" else f"sqlite:///{self.location}"

    def new_store(self, clock: Callable[[], float] | None = None,
                  planner: TaskPlanner | None = None) -> Store:
        """Another store on the same data: another process, or another replica."""
        kwargs: dict[str, Any] = {"planner": planner}
        if clock is not None:
            kwargs["clock"] = clock
        if self.name == "sqlite":
            return SQLiteStore(self.location, **kwargs)
        from service.store.postgres import PostgresStore

        return PostgresStore(self.location, **kwargs)

    def raw(self) -> RawDatabase:
        if self.name == "sqlite":
            return RawDatabase(sqlite3.connect(self.location), "?")
        import psycopg

        return RawDatabase(psycopg.connect(self.location, autocommit=True), "%s")


BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, db_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", str(db_path))
    return Backend("postgres", request.getfixturevalue("postgres_schema"))


@pytest.fixture
async def store(backend: Backend, clock: FakeClock) -> AsyncIterator[Store]:
    async with backend.new_store(clock) as opened:
        yield opened


@pytest.fixture
def planner() -> Planner:
    """A planner that plans nothing until the test says what (``planner.plan = ...``); bind it
    with ``store.bind(planner=planner)``."""
    return Planner()


@pytest.fixture
def raw(backend: Backend) -> Iterator[RawDatabase]:
    database = backend.raw()
    try:
        yield database
    finally:
        database.close()


# -- SQLite only -----------------------------------------------------------------------------


@pytest.fixture
async def sqlite_store(db_path: Path, clock: FakeClock) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(db_path, clock=clock) as opened:
        yield opened


@pytest.fixture
def sqlite_raw(db_path: Path) -> Iterator[RawDatabase]:
    database = RawDatabase(sqlite3.connect(db_path), "?")
    try:
        yield database
    finally:
        database.close()
