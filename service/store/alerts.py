"""Alerts, shared by every process: one row per cause (see :mod:`service.alerts`).

A process that sees a cause raises it (:meth:`Alerts.raise_alert`); the first to claim the
notification within the interval sends it (:meth:`Alerts.claim_alert_notification`, one
``UPDATE``: two processes never both win); a cause nobody has seen for a while is cleared
once (:meth:`Alerts.clear_alert` returns the row only to the process that cleared it, which
sends "recovered"). The dashboard's banner reads :meth:`Alerts.active_alerts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.store.base import StoreBase, required
from service.store.records import Job, job


@dataclass(frozen=True, slots=True)
class AlertRecord:
    """One cause's alert as stored."""

    cause: str
    detail: str
    raised_at: float
    last_seen_at: float
    notified_at: float | None
    cleared_at: float | None


def _alert(row: Mapping[str, Any]) -> AlertRecord:
    return AlertRecord(cause=row["cause"], detail=row["detail"], raised_at=row["raised_at"],
                       last_seen_at=row["last_seen_at"], notified_at=row["notified_at"],
                       cleared_at=row["cleared_at"])


class Alerts(StoreBase):
    """The alerts table, and the one job query only alerts ask."""

    async def raise_alert(self, cause: str, detail: str, now: float) -> AlertRecord:
        """Record that ``cause`` is seen now; a new (or cleared) one starts over."""
        params = {"cause": cause, "detail": detail, "now": now}
        return _alert(required(await self._db.write(
            lambda tx: tx.fetch_one(self._sql["raise_alert"], params))))

    async def claim_alert_notification(self, cause: str, now: float, interval: float) -> bool:
        """Whether this caller should notify about ``cause`` now (once per ``interval``)."""
        params = {"cause": cause, "now": now, "interval": interval}
        return await self._db.write(
            lambda tx: tx.execute(self._sql["claim_alert_notification"], params)) == 1

    async def clear_alert(self, cause: str, now: float, quiet_since: float) -> AlertRecord | None:
        """Clear ``cause`` if nobody has seen it since ``quiet_since``; the row if this call
        cleared it (so exactly one caller says "recovered")."""
        params = {"cause": cause, "now": now, "quiet_since": quiet_since}
        row = await self._db.write(lambda tx: tx.fetch_one(self._sql["clear_alert"], params))
        return None if row is None else _alert(row)

    async def active_alerts(self) -> list[AlertRecord]:
        """Causes raised and not cleared, oldest first."""
        rows = await self._db.read(lambda tx: tx.fetch_all(self._sql["active_alerts"]))
        return [_alert(row) for row in rows]

    async def oldest_submitting(self) -> Job | None:
        """The job in ``submitting`` the longest, if any."""
        row = await self._db.read(lambda tx: tx.fetch_one(self._sql["oldest_submitting"]))
        return None if row is None else job(row)
