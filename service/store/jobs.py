"""Jobs: create, read, list, cancel, the claims the submitter and the reconciler make, and the
submitter's record of PixVerse accepting a job.

A claim reads and marks in one transaction, so processes sharing the database split the work
instead of doing it twice: on SQLite because one writer holds the whole database, on
PostgreSQL because the rows are read ``FOR UPDATE SKIP LOCKED`` and the submission claim holds
an advisory lock while it counts what is in flight.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Final, Unpack

from service.lifecycle import JobState, Outcome, TransitionSource
from service.store import records
from service.store.base import filters, page, required
from service.store.connector import Row, Transaction
from service.store.errors import JobCancelledError, JobNotFoundError, JobStateError
from service.store.event_log import append_transition_event
from service.store.ids import new_job_id
from service.store.ledger import Ledger, encode_payload
from service.store.records import (
    DeliveryOutcome,
    Job,
    JobUpdate,
    SubmissionClaim,
    TransitionResult,
    WebhookDelivery,
    check_limit,
    dumps,
)

#: What :meth:`Jobs.update_job` may set: submission bookkeeping and the media fields.
UPDATABLE_FIELDS: Final = frozenset(JobUpdate.__annotations__)
#: ``last_error`` of a job cancelled before PixVerse accepted it.
CANCELLED_ERROR: Final = "cancelled before PixVerse accepted it"


def new_job_values(*, kind: str, params: Mapping[str, Any], trace_id: str | None = None,
                   labels: Mapping[str, str] | None = None, callback_url: str | None = None,
                   then: Sequence[Mapping[str, Any]] | None = None,
                   parent_job_id: str | None = None) -> dict[str, Any]:
    """The parameters of ``insert_job`` for a new job (a fresh id; ``trace_id`` defaults to
    a fresh UUID)."""
    return {
        "id": new_job_id(), "kind": kind, "state": JobState.QUEUED.value,
        "params": dumps(dict(params)), "trace_id": trace_id or str(uuid.uuid4()),
        "labels": dumps(dict(labels or {})), "callback_url": callback_url,
        "then_steps": dumps([dict(step) for step in then or ()]),
        "parent_job_id": parent_job_id,
    }


class Jobs(Ledger):
    """The jobs table. (A part of :class:`service.store.Store`; claims write through the
    ledger, hence the base.)"""

    async def create_job(
        self, *, kind: str, params: Mapping[str, Any], trace_id: str | None = None,
        labels: Mapping[str, str] | None = None, callback_url: str | None = None,
        then: Sequence[Mapping[str, Any]] | None = None, parent_job_id: str | None = None,
    ) -> Job:
        """Create a job in ``queued`` and record that as its first transition.

        ``trace_id`` defaults to a fresh UUID. Raises ``ConstraintError`` for a trace id already
        in use or an unknown ``parent_job_id``.
        """
        values = new_job_values(kind=kind, params=params, trace_id=trace_id, labels=labels,
                                callback_url=callback_url, then=then,
                                parent_job_id=parent_job_id)

        async def op(tx: Transaction) -> Job:
            return records.job(await self._insert_job(tx, values))

        return await self._db.write(op)

    async def _insert_job(self, tx: Transaction, values: Mapping[str, Any]) -> Row:
        """Insert a job (:func:`new_job_values`) in ``queued`` with its first transition, in
        the caller's transaction; return the job's row."""
        now = self._clock()
        row = required(await tx.fetch_one(self._sql["insert_job"], {**values, "now": now}))
        transition = records.transition(required(await tx.fetch_one(
            self._sql["insert_transition"], {
                "job_id": row["id"], "from_state": None, "to_state": JobState.QUEUED.value,
                "outcome": Outcome.APPLIED.value, "source": TransitionSource.SUBMIT.value,
                "reason": "created", "payload": None, "delivery_id": None,
                "received_at": now, "recorded_at": now})))
        await append_transition_event(tx, self._sql, transition)
        return row

    async def get_job(self, job_id: str) -> Job | None:
        return await self._one_job("get_job", {"id": job_id})

    async def get_job_by_video_id(self, video_id: int) -> Job | None:
        return await self._one_job("get_job_by_video", {"video_id": video_id})

    async def get_job_by_trace_id(self, trace_id: str) -> Job | None:
        return await self._one_job("get_job_by_trace", {"trace_id": trace_id})

    async def _one_job(self, query: str, params: dict[str, Any]) -> Job | None:
        row = await self._db.read(lambda tx: tx.fetch_one(self._sql[query], params))
        return None if row is None else records.job(row)

    async def _jobs(self, sql: str, params: dict[str, Any]) -> list[Job]:
        rows = await self._db.read(lambda tx: tx.fetch_all(sql, params))
        return [records.job(row) for row in rows]

    async def list_jobs(self, *, state: JobState | None = None, kind: str | None = None,
                        limit: int = 50, cursor: str | None = None,
                        ) -> tuple[list[Job], str | None]:
        """Jobs newest first, filtered; the page and the cursor for the next one (``None``
        on the last page)."""
        check_limit(limit)
        conditions, params = filters(state=None if state is None else JobState(state).value,
                                     kind=kind)
        if cursor is not None:
            conditions.append("id < :cursor")
            params["cursor"] = cursor
        sql = self._sql.render(page("SELECT * FROM jobs", conditions, "id DESC"))
        jobs = await self._jobs(sql, {**params, "limit": limit + 1})
        return jobs[:limit], jobs[limit - 1].id if len(jobs) > limit else None

    async def jobs_updated_since(self, since: float, *, limit: int = 100) -> list[Job]:
        """Jobs updated after ``since``, least recently first: what changed since a watcher
        (the dashboard's live list) last looked."""
        return await self._jobs(self._sql["jobs_updated_since"],
                                {"since": since, "limit": check_limit(limit)})

    async def count_jobs_by_state(self, states: Sequence[JobState] | None = None,
                                  ) -> dict[JobState, int]:
        """How many jobs are in each state (of ``states``, default all); states without jobs
        are left out. An index scan, for metrics and the dashboard."""
        rows = await self._db.read(lambda tx: tx.fetch_all(self._sql["count_jobs_by_state"]))
        wanted = set(JobState if states is None else map(JobState, states))
        counts = {JobState(row["state"]): int(row["n"]) for row in rows}
        return {state: n for state, n in counts.items() if state in wanted}

    async def update_job(self, job_id: str, *, unless_cancelled: bool = False,
                         **fields: Unpack[JobUpdate]) -> Job:
        """Change submission bookkeeping; raises ``JobNotFoundError`` or, for a video id
        another job holds, ``ConstraintError``.

        With ``unless_cancelled`` (the submitter's writes) a cancelled job is left as it is and
        ``JobCancelledError`` is raised: checked in the write itself, so a cancel and a
        PixVerse answer landing together are ordered, and an answer after a cancel changes
        nothing."""
        unknown = set(fields) - UPDATABLE_FIELDS
        if unknown:
            raise TypeError(f"update_job() cannot set {', '.join(sorted(unknown))}")
        # Column names come from UPDATABLE_FIELDS, never from the caller's text.
        sets = ", ".join([*(f"{name} = :{name}" for name in fields), "updated_at = :now"])
        guard = " AND cancelled_at IS NULL" if unless_cancelled else ""
        sql = self._sql.render(f"UPDATE jobs SET {sets} WHERE id = :id{guard} RETURNING *")
        video_id = fields.get("video_id")

        async def op(tx: Transaction) -> Job:
            if video_id is not None:
                # Ordered against a webhook looking this id up (ingest_webhook's batch).
                await tx.lock(f"video:{video_id}")
            row = await tx.fetch_one(sql, {**fields, "now": self._clock(), "id": job_id})
            if row is None:
                if guard and await tx.fetch_one(self._sql["get_job"], {"id": job_id}):
                    raise JobCancelledError(job_id)
                raise JobNotFoundError(job_id)
            return records.job(row)

        return await self._db.write(op)

    async def accept_submission(self, job_id: str, video_id: int, *,
                                payload: Mapping[str, Any] | None = None,
                                ) -> list[WebhookDelivery]:
        """PixVerse accepted the job's create call as ``video_id``: store the id (clearing
        ``last_error`` and ``next_attempt_at``) and record ``generating`` (source ``submit``,
        ``payload`` its answer) in one transaction; return the orphans, the webhooks for
        ``video_id`` kept before any job had it, oldest first, for the caller to adopt.

        The orphans are read in the transaction that stores the id, under the id's lock, so
        a webhook for it is either matched to the job by the receiver or returned here. A job
        cancelled meanwhile is left as it is: the answer joins its history (ignored) and
        ``JobCancelledError`` is raised once that commits. Raises ``JobNotFoundError``, or
        ``ConstraintError`` for a video id another job holds.
        """
        text = encode_payload(payload)

        async def op(tx: Transaction) -> tuple[TransitionResult, list[WebhookDelivery] | None]:
            # Ordered against a webhook looking this id up (ingest_webhook's batch).
            await tx.lock(f"video:{video_id}")
            row = await tx.fetch_one(self._sql["accept_submission"], {
                "id": job_id, "video_id": video_id, "now": self._clock()})
            cancelled = row is None
            if row is None:
                row = await tx.fetch_one(self._sql["lock_job"], {"id": job_id})
                if row is None:
                    raise JobNotFoundError(job_id)
            result = await self._record(
                tx, records.job(row), JobState.GENERATING, source=TransitionSource.SUBMIT,
                payload=text, received_at=None, delivery_id=None)
            if cancelled:
                return result, None
            return result, [records.delivery(found) for found in await tx.fetch_all(
                self._sql["video_deliveries"],
                {"video_id": video_id, "outcome": DeliveryOutcome.ORPHAN.value})]

        result, orphans = await self._db.write(op)
        self._observe(result)
        if orphans is None:
            raise JobCancelledError(job_id)
        return orphans

    async def cancel_job(self, job_id: str, *, now: float | None = None) -> Job:
        """Cancel a job, in one transaction; return it as it is now.

        A job PixVerse has not accepted (``queued``, or ``submitting`` without a video id)
        becomes ``rejected`` (reason ``cancelled``): no claim takes it again, and the answer to
        a create call in flight changes nothing (the submitter writes ``unless_cancelled``).
        A job PixVerse accepted keeps its state, since PixVerse has no cancel: the video is
        still made and paid for, but no handler runs for it any more (the planner sees
        ``cancelled_at``, the task runner drops pending tasks). Cancelling again returns the
        job unchanged. Raises ``JobNotFoundError``, or ``JobStateError`` for a job that
        finished without being cancelled.
        """
        async def op(tx: Transaction) -> tuple[Job, TransitionResult | None]:
            row = await tx.fetch_one(self._sql["lock_job"], {"id": job_id})
            if row is None:
                raise JobNotFoundError(job_id)
            job = records.job(row)
            if job.cancelled_at is not None:
                return job, None
            if job.is_terminal:
                raise JobStateError(f"job {job_id} is already {job.state}: nothing to cancel")
            accepted = job.video_id is not None or job.state is JobState.GENERATING
            at = self._clock() if now is None else now
            job = records.job(required(await tx.fetch_one(self._sql["cancel_job"], {
                "id": job_id, "now": at, "last_error": None if accepted else CANCELLED_ERROR})))
            if accepted:
                return job, None
            result = await self._record(
                tx, job, JobState.REJECTED, source=TransitionSource.SUBMIT,
                payload=dumps({"error": "cancelled"}), received_at=at, delivery_id=None,
                reason="cancelled")
            return result.job, result

        job, transition = await self._db.write(op)
        self._observe(transition)
        return job

    async def claim_overdue(self, now: float, grace: float, *, hold_seconds: float,
                            limit: int = 100) -> list[Job]:
        """Jobs in ``submitting`` or ``generating`` with nothing recorded for ``grace`` seconds
        and whose ``next_poll_at`` (if set) has come, longest silent first, each held until
        ``now + hold_seconds`` so that reconcilers on several replicas split them."""
        params = {"cutoff": now - grace, "now": now, "limit": check_limit(limit),
                  "hold": now + hold_seconds}
        rows = await self._db.write(
            lambda tx: tx.fetch_all(self._sql["claim_overdue"], params))
        return sorted(map(records.job, rows), key=lambda job: (job.last_event_at, job.id))

    async def claim_submissions(self, now: float, *, limit: int, lease_seconds: float,
                                max_in_flight: int = 0) -> list[SubmissionClaim]:
        """Take jobs to send to PixVerse, atomically across every process sharing the store:
        ``submitting`` jobs without a video id whose lease ran out (an attempt cut short), then
        due ``queued`` jobs, moved to ``submitting`` (recorded as a transition) while the
        in-flight count stays within ``max_in_flight`` (0: no limit). Every returned job is
        leased until ``now + lease_seconds`` (``next_attempt_at``) and has the attempt it is
        leased for counted (``attempts``), in the same transaction."""
        lease_until = now + lease_seconds

        async def op(tx: Transaction) -> list[SubmissionClaim]:
            # One claimer at a time: the in-flight count stays true until the claims commit.
            await tx.lock("submissions")
            claimed = [SubmissionClaim(records.job(row), None) for row in await tx.fetch_all(
                self._sql["expired_submissions"], {"now": now, "limit": limit})]
            room = limit - len(claimed)
            if max_in_flight:
                in_flight = required(await tx.fetch_one(self._sql["count_in_flight"]))["n"]
                room = min(room, max_in_flight - int(in_flight))
            if room > 0:
                for row in await tx.fetch_all(self._sql["due_queued"],
                                              {"now": now, "limit": room}):
                    result = await self._record(
                        tx, records.job(row), JobState.SUBMITTING,
                        source=TransitionSource.SUBMIT, payload=None, received_at=None,
                        delivery_id=None)
                    claimed.append(SubmissionClaim(result.job, result))
            for claim in claimed:
                await tx.execute(self._sql["lease_submission"],
                                 {"lease_until": lease_until, "id": claim.job.id})
            return [replace(claim, job=replace(claim.job, next_attempt_at=lease_until,
                                               attempts=claim.job.attempts + 1))
                    for claim in claimed]

        claims = await self._db.write(op)
        self._observe(*(claim.transition for claim in claims))
        return claims
