"""Fixtures for the ``/api`` tests: ``database_url`` runs a test on SQLite, then PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.core.conftest import postgres_schema, postgres_server  # noqa: F401


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pixhook.db'}"
    return str(request.getfixturevalue("postgres_schema"))
