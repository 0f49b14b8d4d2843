"""Idempotency keys: a job created under a key is created once, however often it is asked for.

``POST /api/jobs`` with ``Idempotency-Key`` comes here (Stripe's semantics). The key is
claimed in the transaction that creates its job, so exactly-once rests on the database, not on
the caller: on SQLite because one writer runs the transactions one after another, on
PostgreSQL because a second ``INSERT ... ON CONFLICT DO NOTHING`` of the same key waits for the
first transaction on the primary key, claims nothing once it commits, and reads its row (it
claims the key if the first rolled back). Only then is a job inserted, so a losing claim
writes nothing.

A key belongs to a caller (a hash of the bearer token) and names one request (a hash of its
canonical JSON): the same request again gets the job back as it was created; another request
with the key raises :class:`~service.store.errors.IdempotencyKeyReusedError`. A key older than
its TTL counts as absent; expired keys are pruned whenever one is claimed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.store import records
from service.store.base import required
from service.store.connector import Transaction
from service.store.errors import IdempotencyKeyReusedError
from service.store.jobs import Jobs, new_job_values
from service.store.records import Job, dumps


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """An ``Idempotency-Key`` and what it is compared by."""

    #: Who sent it: a hash of the caller's credential, never the credential itself.
    caller: str
    key: str
    #: A hash of the request (its canonical JSON): another request with the key is refused.
    request_hash: str
    #: Seconds the key is kept; an older one counts as absent.
    ttl: float


class IdempotencyKeys(Jobs):
    """The ``idempotency_keys`` table. (A part of :class:`service.store.Store`; it creates
    jobs through the jobs part, hence the base.)"""

    async def create_job_once(
        self, key: IdempotencyKey, *, kind: str, params: Mapping[str, Any],
        labels: Mapping[str, str] | None = None, callback_url: str | None = None,
        then: Sequence[Mapping[str, Any]] | None = None,
    ) -> tuple[Job, bool]:
        """Create a job under ``key`` (see :meth:`create_job`), or find the one it made.

        Returns the new job and ``False``; or, when the same caller sent the same request
        with the key before (within its TTL), that job as it was created and ``True``.
        Raises :class:`IdempotencyKeyReusedError` when the key came with another request.
        """
        values = new_job_values(kind=kind, params=params, labels=labels,
                                callback_url=callback_url, then=then)
        names = {"caller": key.caller, "idempotency_key": key.key}

        async def op(tx: Transaction) -> tuple[Job, bool]:
            now = self._clock()
            await tx.execute(self._sql["prune_idempotency_keys"],
                             {"expired_before": now - key.ttl})
            claimed = await tx.fetch_one(self._sql["claim_idempotency_key"], {
                **names, "request_hash": key.request_hash, "job_id": values["id"], "now": now})
            if claimed is None:
                return await self._replay(tx, key, names), True
            row = await self._insert_job(tx, values)
            await tx.execute(self._sql["keep_idempotent_job"], {**names, "job_row": dumps(row)})
            return records.job(row), False

        return await self._db.write(op)

    async def _replay(self, tx: Transaction, key: IdempotencyKey,
                      names: Mapping[str, str]) -> Job:
        """The job a claimed key made, as it was created."""
        claim = required(await tx.fetch_one(self._sql["get_idempotency_key"], names))
        if claim["request_hash"] != key.request_hash:
            raise IdempotencyKeyReusedError(key.key)
        current = required(await tx.fetch_one(self._sql["get_job"], {"id": claim["job_id"]}))
        # The row as created, over the row as it is now: a column added by a later migration
        # is then present all the same.
        return records.job({**current, **json.loads(claim["job_row"])})
