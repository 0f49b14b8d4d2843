"""The webhook log: every delivery as received, and the nonces that make a replay a duplicate.

Verified webhooks are written by :meth:`service.store.webhook_batch.Webhooks.ingest_webhook`,
which claims the nonce and keeps the delivery in the transaction that applies it; this part
keeps the rest (refused deliveries, for debugging) and reads the log back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from service.store import records
from service.store.base import StoreBase, filters, page, required
from service.store.connector import Operation, Transaction
from service.store.records import (
    DeliveryOutcome,
    WebhookDelivery,
    WebhookIngest,
    check_limit,
    dumps,
)

#: Header names never written to the database, whatever the caller passes: a delivery log is
#: read by people debugging, and replay needs only the signature headers.
SECRET_HEADERS: Final = frozenset({
    "authorization", "proxy-authorization", "cookie", "set-cookie", "api-key", "x-api-key",
})


def safe_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Lower-case header names and drop credentials."""
    return {lower: value for name, value in headers.items()
            if (lower := name.lower()) not in SECRET_HEADERS}


def delivery_row(*, body: bytes, headers: Mapping[str, str], outcome: DeliveryOutcome,
                 received_at: float, video_id: int | None = None, job_id: str | None = None,
                 nonce: str | None = None, timestamp: float | None = None,
                 error: str | None = None) -> dict[str, Any]:
    """The parameters of ``insert_delivery``; credential headers are dropped."""
    return {
        "received_at": received_at, "outcome": DeliveryOutcome(outcome).value,
        "video_id": video_id, "job_id": job_id, "nonce": nonce, "timestamp": timestamp,
        "headers": dumps(safe_headers(headers)), "body": bytes(body), "error": error,
    }


class Deliveries(StoreBase):
    """The webhook delivery log and the nonce table."""

    async def record_webhook_delivery(
        self, *, body: bytes, headers: Mapping[str, str], outcome: DeliveryOutcome,
        received_at: float, video_id: int | None = None, job_id: str | None = None,
        nonce: str | None = None, timestamp: float | None = None, error: str | None = None,
    ) -> WebhookDelivery:
        """Keep one delivery. Credential headers are dropped even if passed."""
        values = delivery_row(body=body, headers=headers, outcome=outcome,
                              received_at=received_at, video_id=video_id, job_id=job_id,
                              nonce=nonce, timestamp=timestamp, error=error)
        row = await self._db.write(lambda tx: tx.fetch_one(self._sql["insert_delivery"], values))
        return records.delivery(required(row))

    async def get_webhook_delivery(self, delivery_id: int) -> WebhookDelivery | None:
        row = await self._db.read(
            lambda tx: tx.fetch_one(self._sql["get_delivery"], {"id": delivery_id}))
        return None if row is None else records.delivery(row)

    async def list_webhook_deliveries(
        self, *, video_id: int | None = None, outcome: DeliveryOutcome | None = None,
        limit: int = 50, cursor: int | None = None,
    ) -> tuple[list[WebhookDelivery], int | None]:
        """Deliveries newest first, and the cursor for the next page (``None`` on the last)."""
        check_limit(limit)
        conditions, params = filters(
            video_id=video_id, outcome=None if outcome is None else DeliveryOutcome(outcome).value)
        if cursor is not None:
            conditions.append("id < :cursor")
            params["cursor"] = cursor
        sql = self._sql.render(page("SELECT * FROM webhook_deliveries", conditions, "id DESC"))
        rows = await self._db.read(lambda tx: tx.fetch_all(sql, {**params, "limit": limit + 1}))
        deliveries = [records.delivery(row) for row in rows[:limit]]
        return deliveries, deliveries[-1].id if len(rows) > limit else None

    async def keep_webhook(
        self, *, body: bytes, headers: Mapping[str, str], nonce: str, timestamp: float,
        received_at: float, video_id: int | None, error: str,
    ) -> WebhookIngest:
        """Keep a verified webhook that changes no job (a status this version does not know,
        an id it cannot read) with ``error`` saying why, so PixVerse can be answered ``ok``
        and nothing is lost. In one transaction: claim the nonce (one seen before writes
        nothing: ``duplicate``), then write the delivery as ``ok`` with the job that has
        ``video_id``, or as an ``orphan`` when none has (the submitter's adoption skips it:
        its status means nothing to it either)."""
        values = delivery_row(body=body, headers=headers, outcome=DeliveryOutcome.OK,
                              received_at=received_at, video_id=video_id, nonce=nonce,
                              timestamp=timestamp, error=error)

        async def op(tx: Transaction) -> WebhookIngest:
            if not await self._claim(tx, nonce, timestamp):
                return WebhookIngest(DeliveryOutcome.DUPLICATE, None, None)
            job = None if video_id is None else await tx.fetch_one(
                self._sql["get_job_by_video"], {"video_id": video_id})
            outcome = DeliveryOutcome.ORPHAN if job is None else DeliveryOutcome.OK
            row = await tx.fetch_one(self._sql["insert_delivery"], {
                **values, "outcome": outcome.value, "job_id": job and job["id"]})
            return WebhookIngest(outcome, records.delivery(required(row)), None)

        return await self._db.write(op)

    async def list_unapplied_webhooks(self, job_id: str, *,
                                      limit: int = 50) -> list[WebhookDelivery]:
        """The job's kept webhooks that changed nothing (:meth:`keep_webhook`; ``error``
        says why), oldest first: a job's history shows them beside its transitions."""
        return await self._db.read(self._unapplied_webhooks(job_id, limit))

    def _unapplied_webhooks(self, job_id: str,
                            limit: int) -> Operation[list[WebhookDelivery]]:
        check_limit(limit)
        sql = self._sql.render(page("SELECT * FROM webhook_deliveries",
                                    ["job_id = :job_id", "error IS NOT NULL"], "id"))

        async def op(tx: Transaction) -> list[WebhookDelivery]:
            rows = await tx.fetch_all(sql, {"job_id": job_id, "limit": limit})
            return [records.delivery(row) for row in rows]

        return op

    async def claim_nonce(self, nonce: str, timestamp: float | None) -> bool:
        """Claim a webhook nonce atomically: ``True`` the first time, ``False`` ever after."""
        return await self._db.write(lambda tx: self._claim(tx, nonce, timestamp))

    async def _claim(self, tx: Transaction, nonce: str, timestamp: float | None) -> bool:
        claimed = await tx.execute(self._sql["claim_nonce"], {
            "nonce": nonce, "timestamp": timestamp, "now": self._clock()})
        return claimed == 1

    async def prune_nonces(self, claimed_before: float) -> int:
        """Forget nonces claimed before a time (older than the signature tolerance: a replay
        that old is refused as stale before its nonce is looked at)."""
        return await self._db.write(
            lambda tx: tx.execute(self._sql["prune_nonces"], {"before": claimed_before}))
