from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.store.sqlite import SQLiteStore


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


@pytest.fixture
async def store(db_path: Path, clock: FakeClock) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(db_path, clock=clock) as opened:
        yield opened


class RawDatabase:
    """A second, plain connection to the database file: what another process would see."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path)

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        return self.conn.execute(sql, params).fetchall()

    def value(self, sql: str, *params: object) -> Any:
        row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]


@pytest.fixture
def raw(db_path: Path) -> Iterator[RawDatabase]:
    database = RawDatabase(db_path)
    try:
        yield database
    finally:
        database.conn.close()
