"""Webhooks written in batches, on both databases: a batch writes what its webhooks would one
at a time, in one transaction, and keeps every guarantee of one webhook.

Webhooks handed to :meth:`Store.ingest_webhook` together are decided by
:func:`service.store.webhook_batch.plan` and written by the connector's set-based
``write_webhooks`` (SQLite: :mod:`~service.store.sqlite_webhook_batch`; PostgreSQL:
:mod:`~service.store.postgres_webhook_batch`). These tests compare a batch with the same
webhooks awaited one by one (each then a batch of one), row for row, and check what a batch
must not do: let one bad webhook fail the others, answer before its commit, lose a bit of a
REAL column, or give rows other ids than one-at-a-time writes would. The PostgreSQL ones at
the end run two stores on one schema (two replicas) against each other's batches.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.lifecycle import JobState, Outcome, TransitionSource
from service.store import DeliveryOutcome, Job, StorageError, Store, WebhookIngest
from service.store.sqlite import SQLiteStore
from tests.support.planner import Planner

from .conftest import HOLD_EVENTS_LOCK, Backend, FakeClock, RawDatabase, with_search_path

FIRST_VIDEO = 384920175633408000
#: Timestamps with 17 significant digits: 15 (what SQLite's JSON prints) would change them.
ODD_TIME = 1_700_000_000.123456789


def _plan(job: Job, transition: Any) -> list[str]:
    """The stores' planner: tasks for what a webhook applied (setting the jobs up queues
    none)."""
    if transition.source is not TransitionSource.WEBHOOK:
        return []
    return ["download", "notify"] if transition.to_state is JobState.SUCCEEDED else ["notify"]


async def _jobs(store: Store, count: int, first_video: int = FIRST_VIDEO) -> list[Job]:
    jobs = []
    for index in range(count):
        job = await store.create_job(kind="text_to_video", params={"prompt": f"p{index}"})
        await store.update_job(job.id, video_id=first_video + index)
        await store.apply_transition(job.id, JobState.GENERATING, source="submit",
                                     received_at=ODD_TIME + index / 7)
        jobs.append(job)
    return jobs


def _webhooks(count: int, seed: int) -> list[dict[str, Any]]:
    """A messy stream: repeats, reversals, replayed nonces, unknown videos."""
    rng = random.Random(seed)
    states = [JobState.GENERATING, JobState.SUCCEEDED, JobState.FAILED,
              JobState.MODERATION_FAILED]
    webhooks = []
    for index in range(count):
        nonce = f"n{index}" if rng.random() > 0.15 or not webhooks else rng.choice(
            webhooks)["nonce"]
        webhooks.append({
            "nonce": nonce,
            "video_id": FIRST_VIDEO + rng.randrange(count // 3 + 2),  # a few unknown
            "proposed": rng.choice(states),
            "received_at": ODD_TIME + rng.random() * 100,
            "timestamp": 1_700_000_000.0 + index,
        })
    return webhooks


def _ingest(store: Store, webhook: dict[str, Any]) -> Any:
    body = (f'{{"id":"{webhook["video_id"]}","status":1,'
            f'"nonce":"{webhook["nonce"]}"}}').encode()
    return store.ingest_webhook(body=body, headers={"Webhook-Nonce": webhook["nonce"],
                                                    "Authorization": "secret"},
                                **webhook)


def _batch_sizes(store: Store) -> list[int]:
    """The size of each batch ``store`` writes from now on, in the order they start."""
    sizes: list[int] = []
    write = store._batches._write_webhooks

    async def recording(webhooks: Any, *args: Any) -> Any:
        sizes.append(len(webhooks))
        return await write(webhooks, *args)

    store._batches._write_webhooks = recording
    return sizes


def _dump(raw: RawDatabase) -> dict[str, list[tuple[Any, ...]]]:
    """Every row a webhook can write, with job ids (random ULIDs) replaced by video ids."""
    video_of = dict(raw.rows("SELECT id, video_id FROM jobs"))

    def rows(sql: str, job_column: int | None) -> list[tuple[Any, ...]]:
        out = []
        for row in raw.rows(sql):
            values = list(row)
            if job_column is not None and values[job_column] is not None:
                values[job_column] = video_of[values[job_column]]
            out.append(tuple(values))
        return out

    return {
        "jobs": rows("SELECT id, state, updated_at, state_changed_at, last_event_at, "
                     "next_poll_at FROM jobs ORDER BY video_id", 0),
        "deliveries": rows("SELECT * FROM webhook_deliveries ORDER BY id", 4),
        "nonces": rows("SELECT * FROM webhook_nonces ORDER BY nonce", None),
        "transitions": rows("SELECT * FROM transitions ORDER BY id", 1),
        "tasks": rows("SELECT id, job_id, transition_id, handler, state, run_after "
                      "FROM tasks ORDER BY id", 1),
        "events": rows("SELECT id, job_id, state, transition_id, recorded_at FROM events "
                       "ORDER BY id", 1),
    }


def _summary(result: Any) -> tuple[Any, ...]:
    """What an ingest handed back, minus the job id (a random ULID per store)."""
    delivery = result.delivery and dataclasses.replace(result.delivery, job_id=None)
    if result.transition is None:
        return result.outcome, delivery, None
    step = result.transition
    return (result.outcome, delivery, step.decision,
            dataclasses.replace(step.transition, job_id=""),
            [dataclasses.replace(task, job_id="", idempotency_key="") for task in step.tasks],
            dataclasses.replace(step.job, id="", trace_id=""))


@pytest.fixture
def other_backend(backend: Backend, tmp_path: Path,
                  request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A second, empty database of the same kind as ``backend``."""
    if backend.name == "sqlite":
        yield Backend("sqlite", str(tmp_path / "other.db"))
        return
    import psycopg

    server = request.getfixturevalue("postgres_server")
    schema = f"t_{secrets.token_hex(6)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield Backend("postgres", with_search_path(server, schema))
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_batch_writes_what_one_at_a_time_writes(backend: Backend,
                                                        other_backend: Backend,
                                                        seed: int) -> None:
    webhooks = _webhooks(60, seed)
    outcomes = {}
    for mode, where in (("batched", backend), ("one_by_one", other_backend)):
        async with where.new_store(FakeClock(), planner=_plan) as store:
            await _jobs(store, 20)
            if mode == "batched":
                writer = store.writer_stats if isinstance(store, SQLiteStore) else None
                transactions = writer.batches if writer else 0
                results = await asyncio.gather(*(_ingest(store, w) for w in webhooks))
                # One batch held them all (the point of the exercise)...
                assert (store.ingest_stats.batches, store.ingest_stats.operations,
                        store.ingest_stats.largest_batch) == (1, 60, 60)
                if writer:  # ...in one transaction
                    assert writer.batches - transactions == 1
            else:
                results = [await _ingest(store, w) for w in webhooks]
                assert store.ingest_stats.batches == 60
        raw = where.raw()
        try:
            if mode == "batched" and where.name == "postgres":
                # ...in one transaction: every row it wrote has the same creator.
                assert raw.value(
                    "SELECT count(DISTINCT x) FROM (SELECT xmin::text AS x FROM webhook_nonces "
                    "UNION SELECT xmin::text FROM webhook_deliveries UNION SELECT xmin::text "
                    "FROM transitions WHERE source = 'webhook' UNION SELECT xmin::text "
                    "FROM tasks) AS rows") == 1
            outcomes[mode] = ([_summary(result) for result in results], _dump(raw))
        finally:
            raw.close()
    batched, one_by_one = outcomes["batched"], outcomes["one_by_one"]
    assert batched[1] == one_by_one[1]
    assert batched[0] == one_by_one[0]
    kinds = {summary[0] for summary in batched[0]}
    assert kinds == {DeliveryOutcome.OK, DeliveryOutcome.ORPHAN, DeliveryOutcome.DUPLICATE}


async def test_returned_records_equal_what_is_read_back(store: Store) -> None:
    store.bind(planner=_plan)
    jobs = await _jobs(store, 5)
    webhooks = [{"nonce": f"n{i}", "video_id": FIRST_VIDEO + i % 5,
                 "proposed": JobState.SUCCEEDED, "received_at": ODD_TIME + i / 3,
                 "timestamp": ODD_TIME} for i in range(37)]  # SQLite: chunks of 32 + 4 + 1
    results = await asyncio.gather(*(_ingest(store, w) for w in webhooks))
    for result in results:
        assert result.delivery == await store.get_webhook_delivery(result.delivery.id)
        assert "authorization" not in result.delivery.headers
        transition = result.transition.transition
        assert transition == await store.get_transition(transition.id)
        assert transition.delivery_id == result.delivery.id
        for task in result.transition.tasks:
            assert task == await store.get_task(task.id)
    # The last result per job is the job as stored, every float bit included.
    for job in jobs:
        last = [r for r in results if r.transition.job.id == job.id][-1]
        assert last.transition.job == await store.get_job(job.id)
    assert sum(r.transition.applied for r in results) == 5
    assert [r.delivery.id for r in results] == list(range(1, 38))


async def test_one_bad_webhook_fails_alone(store: Store, raw: RawDatabase) -> None:
    planner = Planner(_plan)
    store.bind(planner=planner)
    await _jobs(store, 4)

    def broken(job: Job, transition: Any) -> list[str]:
        if job.video_id == FIRST_VIDEO + 2:  # the third webhook's job
            raise RuntimeError("planner bug")
        return _plan(job, transition)

    webhooks = [{"nonce": f"n{i}", "video_id": FIRST_VIDEO + i,
                 "proposed": JobState.SUCCEEDED, "received_at": ODD_TIME,
                 "timestamp": ODD_TIME} for i in range(4)]
    with planner.planning(broken):
        results = await asyncio.gather(*(_ingest(store, w) for w in webhooks),
                                       return_exceptions=True)
    assert isinstance(results[2], RuntimeError)
    assert all(r.outcome is DeliveryOutcome.OK and r.transition.applied
               for i, r in enumerate(results) if i != 2)
    # Nothing of the failed webhook was kept: PixVerse's retry with its nonce goes through.
    retry = await _ingest(store, webhooks[2])
    assert retry.outcome is DeliveryOutcome.OK and retry.transition.applied
    # And nothing of the others was written twice (the batch was rolled back, then each
    # written alone).
    assert raw.value("SELECT count(*) FROM webhook_deliveries") == 4
    assert raw.value("SELECT count(*) FROM transitions WHERE source = 'webhook'") == 4
    assert raw.value("SELECT count(*) FROM tasks WHERE handler = 'download'") == 4
    assert raw.value("SELECT count(*) FROM webhook_nonces") == 4


async def test_a_closed_store_refuses_webhooks(backend: Backend) -> None:
    store = backend.new_store()
    with pytest.raises(Exception, match="not open"):
        await _ingest(store, {"nonce": "n", "video_id": 1, "proposed": JobState.SUCCEEDED,
                              "received_at": 1.0, "timestamp": 1.0})


async def test_close_writes_webhooks_already_handed_in(backend: Backend) -> None:
    store = backend.new_store(FakeClock(), planner=_plan)
    await store.open()
    await _jobs(store, 3)
    webhooks = [{"nonce": f"n{i}", "video_id": FIRST_VIDEO + i, "proposed": JobState.SUCCEEDED,
                 "received_at": ODD_TIME, "timestamp": ODD_TIME} for i in range(3)]
    pending = [asyncio.ensure_future(_ingest(store, w)) for w in webhooks]
    await asyncio.sleep(0)  # handed in, not yet written
    await store.close()
    assert [p.result().outcome for p in pending] == [DeliveryOutcome.OK] * 3
    async with backend.new_store() as reopened:
        deliveries, _ = await reopened.list_webhook_deliveries()
        assert len(deliveries) == 3


@pytest.mark.parametrize("turns", [3, 4], ids=["before_it_starts", "while_it_waits"])
async def test_a_cancelled_batch_answers_its_callers(store: Store, turns: int) -> None:
    store.bind(planner=_plan)
    store._batches._max_linger = 60  # loop turns, not the clock, decide (a loaded machine)
    await _jobs(store, 2)
    webhooks = [{"nonce": f"n{i}", "video_id": FIRST_VIDEO + i, "proposed": JobState.SUCCEEDED,
                 "received_at": ODD_TIME, "timestamp": ODD_TIME} for i in range(2)]
    callers = [asyncio.ensure_future(_ingest(store, w)) for w in webhooks]
    # Turn 1: the callers hand their webhooks in; 2: the batch has grown, so it waits a turn;
    # 3: it has not, so its task is made; 4: it runs and waits for the database.
    for _ in range(turns):
        await asyncio.sleep(0)
    (batch,) = store._batches._writing
    batch.cancel()
    results = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 5)
    assert all(isinstance(r, StorageError) and "interrupted" in str(r) for r in results)


async def test_a_batch_waits_while_a_burst_is_still_arriving(store: Store) -> None:
    """The webhooks of a burst reach the store over several loop turns (each request is read
    and verified in turns of its own); the batch takes them all instead of starting at the
    first one's turn with a few."""
    store.bind(planner=_plan)
    store._batches._max_linger = 60  # loop turns, not the clock, decide (a loaded machine)
    await _jobs(store, 12)
    before = store.ingest_stats.batches
    callers = []
    for i in range(12):  # one per loop turn
        callers.append(asyncio.ensure_future(_ingest(store, {
            "nonce": f"n{i}", "video_id": FIRST_VIDEO + i, "proposed": JobState.SUCCEEDED,
            "received_at": ODD_TIME, "timestamp": ODD_TIME})))
        await asyncio.sleep(0)
    results = await asyncio.gather(*callers)
    assert [r.outcome for r in results] == [DeliveryOutcome.OK] * 12
    assert store.ingest_stats.batches - before == 1
    assert store.ingest_stats.largest_batch == 12


async def test_a_batch_that_keeps_growing_starts_within_the_linger_limit(store: Store) -> None:
    """A steady trickle never stops growing a batch; it starts after ``MAX_LINGER`` anyway, so
    no webhook waits longer than that for its batch to begin."""
    store.bind(planner=_plan)
    await _jobs(store, 1)
    sizes = _batch_sizes(store)
    first = asyncio.ensure_future(_ingest(store, {
        "nonce": "first", "video_id": FIRST_VIDEO, "proposed": JobState.SUCCEEDED,
        "received_at": ODD_TIME, "timestamp": ODD_TIME}))
    trickle = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not first.done():  # a new webhook every loop turn, for an unknown video (orphans)
        assert loop.time() - started < 1, "the first webhook's batch never started"
        trickle.append(asyncio.ensure_future(_ingest(store, {
            "nonce": f"t{len(trickle)}", "video_id": 7 + len(trickle),
            "proposed": JobState.SUCCEEDED, "received_at": ODD_TIME, "timestamp": ODD_TIME})))
        await asyncio.sleep(0)
    assert first.result().outcome is DeliveryOutcome.OK
    await asyncio.gather(*trickle)
    # Cut by time, not by size: a full first batch would mean the trickle held it until it
    # filled.
    assert 1 < sizes[0] < store._batches._max_batch


async def test_each_answer_comes_after_its_commit(store: Store, backend: Backend) -> None:
    """A caller answered ``ok`` can rely on another process seeing what was written."""
    store.bind(planner=_plan)
    await _jobs(store, 6)
    seen: list[int] = []

    async def ingest_then_look(webhook: dict[str, Any]) -> None:
        result = await _ingest(store, webhook)
        other = backend.raw()  # another connection: only committed rows
        try:
            seen.append(other.value(
                "SELECT count(*) FROM webhook_deliveries d JOIN transitions t "
                "ON t.delivery_id = d.id JOIN events e ON e.transition_id = t.id "
                "WHERE d.id = ?", result.delivery.id))
        finally:
            other.close()

    await asyncio.gather(*(ingest_then_look({
        "nonce": f"n{i}", "video_id": FIRST_VIDEO + i % 6, "proposed": JobState.SUCCEEDED,
        "received_at": ODD_TIME, "timestamp": ODD_TIME}) for i in range(12)))
    assert seen == [1] * 12


# -- PostgreSQL: two replicas' batches against each other --------------------------------------


@pytest.fixture
async def replicas(postgres_schema: str) -> AsyncIterator[tuple[Store, Store]]:
    backend = Backend("postgres", postgres_schema)
    async with backend.new_store(planner=_plan) as one, \
            backend.new_store(planner=_plan) as two:
        yield one, two


def _webhook(nonce: str, video_id: int, state: JobState) -> dict[str, Any]:
    return {"nonce": nonce, "video_id": video_id, "proposed": state,
            "received_at": ODD_TIME, "timestamp": ODD_TIME}


@pytest.mark.postgres
async def test_replicas_batches_claim_each_nonce_once(replicas: tuple[Store, Store],
                                                      postgres_schema: str) -> None:
    """The same deliveries (a proxy retrying on the other replica) land in both replicas'
    batches at once, in opposite orders: each nonce is taken once, and nothing deadlocks."""
    one, two = replicas
    await _jobs(one, 30)
    webhooks = [_webhook(f"n{i}", FIRST_VIDEO + i % 30, JobState.SUCCEEDED)
                for i in range(60)]
    rounds = []
    for _ in range(3):  # a batch of 120 on each side, each webhook twice in each
        results: list[WebhookIngest] = await asyncio.gather(
            *(_ingest(one, w) for w in webhooks + webhooks),
            *(_ingest(two, w) for w in reversed(webhooks + webhooks)))
        rounds.append(results)
    taken = sorted(r.delivery.nonce for r in rounds[0] if r.outcome is not
                   DeliveryOutcome.DUPLICATE)
    assert taken == sorted(w["nonce"] for w in webhooks)  # each nonce once
    raw = Backend("postgres", postgres_schema).raw()
    try:
        # Each replica's batch went through whole (locks taken in one order: no deadlock made
        # one of them fall back to writing its webhooks one by one).
        assert raw.value("SELECT count(DISTINCT xmin::text) FROM webhook_deliveries") <= 2
        assert raw.value("SELECT count(*) FROM webhook_deliveries") == 60
        assert raw.value("SELECT count(DISTINCT nonce) FROM webhook_deliveries") == 60
        # One success per job (the second nonce for a job is a logged duplicate event).
        assert raw.value("SELECT count(*) FROM transitions WHERE outcome = 'applied' "
                         "AND source = 'webhook'") == 30
        assert raw.value("SELECT count(*) FROM tasks WHERE handler = 'download'") == 30
    finally:
        raw.close()
    # The first round took them all; the later ones are replays.
    assert {r.outcome for r in rounds[1] + rounds[2]} == {DeliveryOutcome.DUPLICATE}


@pytest.mark.postgres
async def test_replicas_batches_decide_each_jobs_messages_in_order(
        replicas: tuple[Store, Store], postgres_schema: str) -> None:
    """Both replicas' batches step the same jobs at once (row locks in one order): each job's
    history reads as one sequence of decisions, its events follow it, and the success is
    applied once, with its task."""
    one, two = replicas
    jobs = await _jobs(one, 20)
    states = [JobState.GENERATING, JobState.SUCCEEDED, JobState.GENERATING,
              JobState.SUCCEEDED]
    waves = [[_webhook(f"{side}{step}-{i}", FIRST_VIDEO + i, state) for i in range(20)]
             for step, state in enumerate(states) for side in "ab"]
    for wave_a, wave_b in zip(waves[::2], waves[1::2], strict=True):
        await asyncio.gather(*(_ingest(one, w) for w in wave_a),
                             *(_ingest(two, w) for w in reversed(wave_b)))
    raw = Backend("postgres", postgres_schema).raw()
    try:
        for job in jobs:
            history = raw.rows("SELECT id, from_state, to_state, outcome FROM transitions "
                               "WHERE job_id = ? AND source = 'webhook' ORDER BY id", job.id)
            assert len(history) == 8
            state = "generating"
            for _, from_state, to_state, outcome in history:
                assert from_state == state  # decided after the one before it committed
                if outcome == "applied":
                    state = to_state
            assert state == "succeeded"
            assert [row[3] for row in history].count("applied") == 1
            logged = raw.rows("SELECT transition_id FROM events WHERE job_id = ? AND "
                              "transition_id IN (SELECT id FROM transitions WHERE "
                              "source = 'webhook') ORDER BY id", job.id)
            assert [row[0] for row in logged] == [row[0] for row in history]
            assert raw.value("SELECT count(*) FROM tasks WHERE job_id = ? AND "
                             "handler = 'download'", job.id) == 1
    finally:
        raw.close()


@pytest.mark.postgres
async def test_a_batch_and_a_poll_decide_a_job_one_after_the_other(
        replicas: tuple[Store, Store], postgres_schema: str) -> None:
    """A replica's reconciler records a poll's answer while the other replica's batch carries
    a webhook for the same job: the job's row lock orders them, so the second is decided on
    what the first did (one terminal state applied, the other ignored)."""
    one, two = replicas
    for round_ in range(10):
        first = FIRST_VIDEO + 1000 * (round_ + 1)
        jobs = await _jobs(one, 8, first_video=first)
        await asyncio.gather(
            *(_ingest(two, _webhook(f"r{round_}-{i}", first + i, JobState.SUCCEEDED))
              for i in range(8)),
            *(one.apply_transition(job.id, JobState.FAILED, source="poll") for job in jobs))
        raw = Backend("postgres", postgres_schema).raw()
        try:
            for job in jobs:
                history = raw.rows("SELECT from_state, to_state, outcome FROM transitions "
                                   "WHERE job_id = ? ORDER BY id", job.id)
                state = None
                for from_state, to_state, outcome in history:
                    assert from_state == state
                    if outcome == "applied":
                        state = to_state
                assert raw.value("SELECT state FROM jobs WHERE id = ?", job.id) == state
                assert [row[2] for row in history].count("applied") == 3  # queued, gen., end
        finally:
            raw.close()


@pytest.mark.postgres
async def test_no_orphan_slips_between_a_batch_and_the_video_ids(
        replicas: tuple[Store, Store]) -> None:
    """Batches of webhooks for video ids the submitter (another replica) is recording at that
    moment: each delivery is either matched to its job, or visible as an orphan once
    ``update_job`` has returned, so the submitter's adoption finds it."""
    one, two = replicas

    async def assign(job: Job, video_id: int) -> list[int]:
        await one.update_job(job.id, video_id=video_id)
        orphans, _ = await one.list_webhook_deliveries(
            video_id=video_id, outcome=DeliveryOutcome.ORPHAN)
        return [delivery.id for delivery in orphans]

    for round_ in range(20):
        jobs = [await one.create_job(kind="text_to_video", params={}) for _ in range(4)]
        videos = [1000 + round_ * 10 + i for i in range(4)]
        results = await asyncio.gather(
            *(_ingest(two, _webhook(f"n{video}", video, JobState.GENERATING))
              for video in videos),
            *(assign(job, video) for job, video in zip(jobs, videos, strict=True)))
        ingests, orphans = results[:4], results[4:]
        for ingest, seen in zip(ingests, orphans, strict=True):
            if ingest.outcome is DeliveryOutcome.ORPHAN:
                assert seen == [ingest.delivery.id]
            else:
                assert ingest.outcome is DeliveryOutcome.OK and seen == []
    assert two.ingest_stats.largest_batch == 4


@pytest.mark.postgres
async def test_a_batch_on_dropped_connections_is_written_anyway(postgres_schema: str) -> None:
    """A database restart or failover drops every pooled connection; the next batch finds
    out on its first round trip, before anything is committed, and runs again on a new one."""
    import time

    import psycopg

    name = f"pixhook_test_{time.monotonic_ns()}"
    separator = "&" if "?" in postgres_schema else "?"
    backend = Backend("postgres", f"{postgres_schema}{separator}application_name={name}")
    async with backend.new_store(planner=_plan) as store:
        await _jobs(store, 4)
        await asyncio.gather(*(_ingest(store, _webhook(f"w{i}", FIRST_VIDEO + i,
                                                       JobState.GENERATING))
                               for i in range(4)))  # the pool has its connections
        with psycopg.connect(postgres_schema, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = %s", [name])
        results = await asyncio.gather(*(_ingest(store, _webhook(
            f"n{i}", FIRST_VIDEO + i, JobState.SUCCEEDED)) for i in range(4)))
        assert all(r.outcome is DeliveryOutcome.OK and r.transition.outcome is Outcome.APPLIED
                   for r in results)


@pytest.mark.postgres
async def test_a_batch_waits_for_an_earlier_events_writer(postgres_schema: str) -> None:
    """Event ids are visible in commit order: a batch takes the events lock before it writes
    its events, so it cannot commit position n + 1 while another writer holds n."""
    import contextlib

    import psycopg

    backend = Backend("postgres", postgres_schema)
    async with backend.new_store(planner=_plan) as store:
        await _jobs(store, 3)
        before = await store.last_event_sequence()
        other = await psycopg.AsyncConnection.connect(postgres_schema)
        try:
            await other.execute(HOLD_EVENTS_LOCK)
            writing = asyncio.gather(*(_ingest(store, _webhook(
                f"n{i}", FIRST_VIDEO + i, JobState.SUCCEEDED)) for i in range(3)))
            done, _ = await asyncio.wait({writing}, timeout=0.5)
            assert not done, "a batch committed events while an earlier writer held the lock"
            assert (await store.list_events(after=before)).events == []
            await other.commit()
            results = await asyncio.wait_for(writing, 10)
        finally:
            with contextlib.suppress(Exception):
                await other.rollback()
            await other.close()
        page = await store.list_events(after=before)
        assert [e.id for e in page.events] == [
            f"transition:{r.transition.transition.id}" for r in results]


@pytest.mark.postgres
async def test_webhooks_arriving_while_two_batches_are_written_form_the_next_one(
        postgres_schema: str) -> None:
    """Two batches at a time per process on PostgreSQL (one waits for the database while the
    next is decided): webhooks verified while both are under way wait and go together, so a
    busy receiver pays fewer round trips per webhook."""
    import contextlib

    import psycopg

    async with Backend("postgres", postgres_schema).new_store(planner=_plan) as store:
        await _jobs(store, 8)
        sizes = _batch_sizes(store)
        other = await psycopg.AsyncConnection.connect(postgres_schema)
        try:
            await other.execute(HOLD_EVENTS_LOCK)  # both batches wait for it to commit
            callers = []
            for batch in ("a", "b"):
                callers += [asyncio.ensure_future(_ingest(store, _webhook(
                    f"{batch}{i}", FIRST_VIDEO + len(callers) + i, JobState.SUCCEEDED)))
                    for i in range(2)]
                for _ in range(5):
                    await asyncio.sleep(0)  # the batch forms and goes to the database
            for i in range(4, 8):  # one per loop turn, each of which would start a batch
                callers.append(asyncio.ensure_future(_ingest(store, _webhook(
                    f"c{i}", FIRST_VIDEO + i, JobState.SUCCEEDED))))
                await asyncio.sleep(0)
            await asyncio.sleep(0.2)
            assert sizes == [2, 2], "the third batch started while two were under way"
            await other.commit()
            results = await asyncio.wait_for(asyncio.gather(*callers), 10)
        finally:
            with contextlib.suppress(Exception):
                await other.rollback()
            await other.close()
        assert all(r.outcome is DeliveryOutcome.OK for r in results)
        assert sizes == [2, 2, 4]
