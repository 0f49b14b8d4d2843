"""Durable storage for pixhook: jobs, their transition history, webhook deliveries and the
handler task queue.

>>> store = connect("sqlite:///pixhook.db", planner=handlers.plan)   # doctest: +SKIP
>>> async with store:                                                 # doctest: +SKIP
...     job = await store.create_job(kind="text_to_video", params={"prompt": "a cat"})

The logic is written once, split by concern, over a connector that holds what each database
does differently::

    store.py       Store: the parts below, assembled; open/close
      jobs.py        create, read, list, cancel; the submitter's and the reconciler's claims
      ledger.py      THE write path of a transition (decide, history row, job, tasks)
      webhook_batch.py  verified webhooks in: batched per loop turn, decided by the
                     ledger's rules, written set-based by the connector
      deliveries.py  the webhook log and nonces
      queue.py       handler tasks: claim, finish, retry, wait
      sessions.py    dashboard logins (only a hash of each id): create, check, revoke
      idempotency.py jobs created once per Idempotency-Key (claimed with the job)
      event_log.py   the event stream's log: a row per transition and task run, numbered
                     in commit order (written with them; read by GET /api/events)
      workers.py     worker heartbeats: who is alive, what each runs; the queue's age
      retention.py   old history of finished jobs, nonces, keys: pruned in small batches
      alerts.py      alerts by cause, shared by every process (raise, notify once, clear)
      operator.py    the operator's actions: search, bulk retry of dead tasks, replay,
                     a job's raw event log
    schema.py      migrations (sql/migrations/*.sql, written once for both databases)
    sql/           every statement by name (queries.sql), and what each dialect says
                   differently (sqlite.sql, postgres.sql)
    connector.py   the I/O boundary: a transaction, fetch, execute, lock, notify
    sqlite.py      SQLite's connector (loop writer: writer.py; reader threads: threads.py)
                   and its set-based webhook write (sqlite_webhook_batch.py)
    postgres.py    PostgreSQL's connector (pool, advisory locks, LISTEN/NOTIFY) and its
                   set-based webhook write (postgres_webhook_batch.py: two pipelined
                   round trips per batch)
    records.py     the records returned, and rows to records
    errors.py      what the store raises

Where is a transition written? In :meth:`service.store.ledger.Ledger._record`, for every
source but webhooks, on both databases; webhook batches write the same rows set-based, by the
same rules (:mod:`service.store.webhook_batch`). SQLite is the embedded default; PostgreSQL
(for several machines) is an optional extra (``pip install 'pixhook[postgres]'``), imported
only when a ``postgresql://`` URL asks for it.
"""

from __future__ import annotations

import urllib.parse
from typing import Any, Final

from service.store.base import TransitionObserver
from service.store.errors import (
    ConstraintError,
    IdempotencyKeyReusedError,
    JobCancelledError,
    JobNotFoundError,
    JobStateError,
    LeaseLostError,
    SchemaError,
    StorageError,
    StoreClosedError,
    TaskNotFoundError,
    TaskStateError,
    UnsupportedDatabaseError,
)
from service.store.idempotency import IdempotencyKey
from service.store.records import (
    DeliveryOutcome,
    Job,
    JobHistory,
    JobUpdate,
    SubmissionClaim,
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
from service.store.sqlite import SQLiteStore
from service.store.store import Store
from service.store.workers import WorkerHeartbeat

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_URL",
    "ConstraintError",
    "DeliveryOutcome",
    "IdempotencyKey",
    "IdempotencyKeyReusedError",
    "Job",
    "JobCancelledError",
    "JobNotFoundError",
    "JobStateError",
    "JobUpdate",
    "LeaseLostError",
    "SQLiteStore",
    "SchemaError",
    "StorageError",
    "Store",
    "SubmissionClaim",
    "StoreClosedError",
    "Task",
    "TaskNotFoundError",
    "TaskPlanner",
    "TaskRun",
    "TaskRunOutcome",
    "TaskState",
    "TaskStateError",
    "Transition",
    "TransitionObserver",
    "TransitionResult",
    "JobHistory",
    "UnsupportedDatabaseError",
    "WebhookDelivery",
    "WebhookIngest",
    "WorkerHeartbeat",
    "connect",
    "is_postgres_url",
    "sqlite_path_from_url",
]

#: The environment variable that names the database (read by the config layer, not here).
DATABASE_URL_ENV: Final = "PIXHOOK_DATABASE_URL"
DEFAULT_DATABASE_URL: Final = "sqlite:///pixhook.db"

_POSTGRES_SCHEMES: Final = ("postgres", "postgresql", "postgresql+psycopg", "postgresql+asyncpg")
#: pixhook's own options in a PostgreSQL URL's query (the rest goes to libpq as is).
_POOL_OPTIONS: Final = ("pool_min_size", "pool_max_size")
POSTGRES_INSTALL_HINT: Final = "PostgreSQL needs an extra: pip install 'pixhook[postgres]'"


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
            url, "a PostgreSQL URL names no SQLite file; open it with connect()"
        )
    if scheme != "sqlite":
        raise UnsupportedDatabaseError(url, f"unknown scheme {scheme!r}; use sqlite:///PATH")
    # sqlite:///rel -> "rel"; sqlite:////abs -> "/abs" (the empty host ends at the third slash)
    if not rest.startswith("/") or rest == "/":
        raise UnsupportedDatabaseError(
            url, "a SQLite URL has three slashes and a path: sqlite:///PATH or sqlite:////ABS"
        )
    return rest[1:]


def is_postgres_url(url: str) -> bool:
    """Whether a database URL names a PostgreSQL server."""
    scheme, separator, _ = url.partition("://")
    return bool(separator) and scheme.lower() in _POSTGRES_SCHEMES


def connect(url: str = DEFAULT_DATABASE_URL, *, planner: TaskPlanner | None = None,
            observer: TransitionObserver | None = None) -> Store:
    """A store for a database URL, not yet opened (``await store.open()`` or ``async with``).

    ``sqlite:///PATH`` (or a bare path) opens :class:`SQLiteStore`; ``postgresql://`` and
    ``postgres://`` open :class:`~service.store.postgres.PostgresStore`. A PostgreSQL URL is
    a libpq URL (``postgresql://user:password@host:5432/db?sslmode=require``) and may also
    size the pool: ``pool_min_size`` (default 1) and ``pool_max_size`` (default 10).

    ``planner`` names the handler tasks a transition queues (``HandlerSet.plan``) and
    ``observer`` hears of every transition once committed (``Metrics.record_transition``).

    :raises UnsupportedDatabaseError: see :func:`sqlite_path_from_url`; also for a PostgreSQL
        URL when psycopg is not installed, or with a bad pool size.
    """
    if is_postgres_url(url):
        return _connect_postgres(url, planner=planner, observer=observer)
    return SQLiteStore(sqlite_path_from_url(url), planner=planner, observer=observer)


def _connect_postgres(url: str, **hooks: Any) -> Store:
    try:
        from service.store.postgres import PostgresStore
    except ImportError as exc:
        raise UnsupportedDatabaseError(url, POSTGRES_INSTALL_HINT) from exc
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    sizes: dict[str, int] = {}
    for name, value in query:
        if name in _POOL_OPTIONS:
            try:
                sizes[name] = int(value)
            except ValueError:
                raise UnsupportedDatabaseError(url, f"{name} must be a number") from None
    # libpq knows postgresql:// and postgres:// only, and rejects options it does not know.
    conninfo = urllib.parse.urlunsplit(parts._replace(
        scheme="postgresql",
        # quote, not quote_plus: libpq decodes %20 but takes "+" literally.
        query=urllib.parse.urlencode([(k, v) for k, v in query if k not in _POOL_OPTIONS],
                                     quote_via=urllib.parse.quote),
    ))
    min_size = sizes.get("pool_min_size", 1)
    max_size = sizes.get("pool_max_size", max(10, min_size))
    if not 1 <= min_size <= max_size:
        raise UnsupportedDatabaseError(
            url, f"need 1 <= pool_min_size <= pool_max_size, not {min_size}, {max_size}")
    return PostgresStore(conninfo, min_size=min_size, max_size=max_size, **hooks)
