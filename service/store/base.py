"""What every part of the store stands on: the connector, its SQL, the clock, and the hooks
bound when the store is built (the task planner and the transition observer)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from service.store.connector import Connector, Row
from service.store.errors import StorageError
from service.store.records import TaskPlanner, TransitionResult

#: Told of every recorded transition, after it committed (``Metrics.record_transition``).
TransitionObserver = Callable[[TransitionResult], None]


class StoreBase:
    """The state the store's parts share. See :class:`service.store.Store`."""

    def __init__(self, connector: Connector, *, planner: TaskPlanner | None = None,
                 observer: TransitionObserver | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._db = connector
        self._sql = connector.sql
        self._planner = planner
        self._observer = observer
        self._clock = clock

    def bind(self, *, planner: TaskPlanner | None = None,
             observer: TransitionObserver | None = None) -> None:
        """Set the planner and the observer, once, while the process is wired (a store
        passed in ready-made to ``build_services``)."""
        if planner is not None:
            self._planner = planner
        if observer is not None:
            self._observer = observer

    def _observe(self, *results: TransitionResult | None) -> None:
        if self._observer is not None:
            for result in results:
                if result is not None:
                    self._observer(result)


def required(row: Row | None) -> Row:
    """The row a statement that always returns one (``INSERT ... RETURNING``) returned."""
    if row is None:
        raise StorageError("a statement returned no row")
    return row


def page(sql: str, conditions: list[str], order: str) -> str:
    """``sql`` with its filters joined by AND, then ``ORDER BY order LIMIT :limit``."""
    where = " WHERE " + " AND ".join(conditions) if conditions else ""
    return f"{sql}{where} ORDER BY {order} LIMIT :limit"


def filters(**values: Any) -> tuple[list[str], dict[str, Any]]:
    """``column = :column`` for every filter given (not ``None``), and the parameters."""
    given = {name: value for name, value in values.items() if value is not None}
    return [f"{name} = :{name}" for name in given], given
