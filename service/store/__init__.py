"""Durable storage for pixhook: jobs, their transition history, webhook deliveries and the
handler task queue.

>>> store = connect("sqlite:///pixhook.db")      # doctest: +SKIP
>>> async with store:                             # doctest: +SKIP
...     job = await store.create_job(kind="text_to_video", params={"prompt": "a cat"})

Backends implement :class:`Store` (``service.store.base``). SQLite (``service.store.sqlite``) is
the embedded default; PostgreSQL is planned behind the same interface.
"""

from __future__ import annotations

from typing import Final

from service.store.base import (
    DeliveryOutcome,
    Job,
    JobUpdate,
    Store,
    Task,
    TaskPlanner,
    TaskRun,
    TaskRunOutcome,
    TaskState,
    Transition,
    TransitionResult,
    WebhookDelivery,
    WebhookIngest,
)
from service.store.errors import (
    ConstraintError,
    JobNotFoundError,
    SchemaError,
    StorageError,
    StoreClosedError,
    LeaseLostError,
    TaskNotFoundError,
    TaskStateError,
    UnsupportedDatabaseError,
)
from service.store.sqlite import SQLiteStore

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_URL",
    "ConstraintError",
    "DeliveryOutcome",
    "Job",
    "JobNotFoundError",
    "JobUpdate",
    "SQLiteStore",
    "SchemaError",
    "StorageError",
    "Store",
    "StoreClosedError",
    "LeaseLostError",
    "Task",
    "TaskNotFoundError",
    "TaskRun",
    "TaskRunOutcome",
    "TaskStateError",
    "TaskPlanner",
    "TaskState",
    "Transition",
    "TransitionResult",
    "UnsupportedDatabaseError",
    "WebhookDelivery",
    "WebhookIngest",
    "connect",
    "sqlite_path_from_url",
]

#: The environment variable that names the database (read by the config layer, not here).
DATABASE_URL_ENV: Final = "PIXHOOK_DATABASE_URL"
DEFAULT_DATABASE_URL: Final = "sqlite:///pixhook.db"

_POSTGRES_SCHEMES: Final = ("postgres", "postgresql", "postgresql+psycopg", "postgresql+asyncpg")


def sqlite_path_from_url(url: str) -> str:
    """The file path a SQLite URL names.

    ``sqlite:///relative/path`` is relative to the working directory, ``sqlite:////abs/path``
    is absolute, ``sqlite:///:memory:`` is a private in-memory database, and a string without
    a scheme is taken as a path.

    :raises UnsupportedDatabaseError: for any other scheme, or a SQLite URL without a path.
    """
    scheme, separator, rest = url.partition("://")
    if not separator:
        if not url:
            raise UnsupportedDatabaseError(url, "empty")
        return url
    scheme = scheme.lower()
    if scheme in _POSTGRES_SCHEMES:
        raise UnsupportedDatabaseError(
            url, "PostgreSQL is not yet supported; use a sqlite:/// URL or a file path"
        )
    if scheme != "sqlite":
        raise UnsupportedDatabaseError(url, f"unknown scheme {scheme!r}; use sqlite:///PATH")
    # sqlite:///rel -> "rel"; sqlite:////abs -> "/abs" (the empty host ends at the third slash)
    if not rest.startswith("/") or rest == "/":
        raise UnsupportedDatabaseError(
            url, "a SQLite URL has three slashes and a path: sqlite:///PATH or sqlite:////ABS"
        )
    return rest[1:]


def connect(url: str = DEFAULT_DATABASE_URL) -> Store:
    """A store for a database URL, not yet opened (``await store.open()`` or ``async with``).

    :raises UnsupportedDatabaseError: see :func:`sqlite_path_from_url`.
    """
    return SQLiteStore(sqlite_path_from_url(url))
