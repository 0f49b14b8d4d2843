"""What the store raises. All of it derives from :class:`StorageError`::

    ServiceError                      (service.exceptions)
    └── StorageError                  a database operation failed (the driver's error is chained)
        ├── ConstraintError           a write broke a UNIQUE or FOREIGN KEY constraint
        │   └── IdempotencyKeyReusedError  an idempotency key already made another request's job
        ├── JobNotFoundError          no job has that id (also a LookupError)
        ├── JobStateError             a job is not in a state that allows the operation
        │   └── JobCancelledError     the job was cancelled: a submitter's write was refused
        ├── TaskNotFoundError         no task has that id (also a LookupError)
        ├── LeaseLostError            a task's lease passed to another run
        ├── TaskStateError            a task is not in a state that allows the operation
        ├── SchemaError               the database was migrated by a newer pixhook
        ├── StoreClosedError          the store is not open (yet, or any more)
        └── UnsupportedDatabaseError  a database URL pixhook cannot use (also a ValueError)
"""

from __future__ import annotations

import sqlite3

from service.exceptions import ServiceError


class StorageError(ServiceError):
    """A database operation failed."""


class ConstraintError(StorageError):
    """A write broke a UNIQUE or FOREIGN KEY constraint (a taken video id, an unknown parent)."""


class IdempotencyKeyReusedError(ConstraintError):
    """The idempotency key in ``key`` was used before with a different request (Stripe's
    semantics: a key names one request, so it is refused rather than replayed)."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__("this Idempotency-Key was used with a different request")


class JobNotFoundError(StorageError, LookupError):
    """No job has the id in ``job_id``."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id!r}")


class JobStateError(StorageError):
    """The job is not in a state that allows this (a finished job cannot be cancelled)."""


class JobCancelledError(JobStateError):
    """The job in ``job_id`` was cancelled, so a write meant for a live submission was not
    made (:meth:`Store.update_job` with ``unless_cancelled``)."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"job {job_id!r} was cancelled")


class TaskNotFoundError(StorageError, LookupError):
    """No task has the id in ``task_id``."""

    def __init__(self, task_id: int) -> None:
        self.task_id = task_id
        super().__init__(f"no task with id {task_id!r}")


class LeaseLostError(StorageError):
    """A worker tried to finish a task whose lease it no longer holds: the lease ran out and
    another run claimed the task (or it was finished already). The other run's result wins."""

    def __init__(self, task_id: int, attempt: int) -> None:
        self.task_id = task_id
        self.attempt = attempt
        super().__init__(f"task {task_id}: attempt {attempt} no longer holds the lease")


class TaskStateError(StorageError):
    """The task is not in a state that allows this (only dead tasks can be retried)."""


class SchemaError(StorageError):
    """The database holds migrations this pixhook does not know: a newer version wrote it."""


class StoreClosedError(StorageError):
    """The store was used before ``open()`` or after ``close()``."""


class UnsupportedDatabaseError(StorageError, ValueError):
    """A database URL names a backend or form pixhook cannot use; ``url`` holds it."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(f"unsupported database URL {url!r}: {reason}")


def translate_sqlite_error(exc: BaseException) -> BaseException:
    """Map a ``sqlite3`` exception onto the store's tree; anything else passes through.

    The caller raises the result ``from exc`` so the driver's message stays in the chain.
    """
    if isinstance(exc, sqlite3.IntegrityError):
        return ConstraintError(str(exc))
    if isinstance(exc, sqlite3.Error):
        return StorageError(f"{type(exc).__name__}: {exc}")
    return exc
