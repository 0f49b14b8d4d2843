"""The store beyond transitions: schema, durability, queries, on both backends; and what is
SQLite's own (pragmas, group commit, file URLs, query plans)."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from service.lifecycle import JobState, Outcome, TransitionSource
from service.store import (
    ConstraintError,
    DeliveryOutcome,
    JobNotFoundError,
    SchemaError,
    StorageError,
    Store,
    StoreClosedError,
    TaskNotFoundError,
    TaskState,
    UnsupportedDatabaseError,
    connect,
    sqlite_path_from_url,
)
from service.store.connector import run_sync
from service.store.schema import migrate
from service.store.sql import migration_names, queries
from service.store.sqlite import SQLiteStore, SQLiteTransaction
from tests.core.conftest import Backend, FakeClock, RawDatabase
from tests.support.planner import plans

WEBHOOK = TransitionSource.WEBHOOK
MAX_VIDEO_ID = 2**63 - 1


# -- schema and connections ------------------------------------------------------------------


async def test_open_configures_sqlite(sqlite_store: SQLiteStore, db_path: Path) -> None:
    db = Database(db_path)
    try:
        assert db.journal_mode == "wal"
        assert {"jobs", "transitions", "webhook_deliveries", "webhook_nonces", "tasks",
                "_sqlite_migrations"} <= set(db.table_names())
        task_columns = {column.name for column in db.table("tasks").columns}
        assert task_columns == {
            "id", "job_id", "transition_id", "handler", "idempotency_key", "state", "attempts",
            "run_after", "lease_until", "last_error", "created_at", "updated_at"}
        unique = {tuple(index.columns) for index in db.table("tasks").indexes if index.unique}
        assert ("idempotency_key",) in unique
        job_unique = {tuple(index.columns) for index in db.table("jobs").indexes if index.unique}
        assert {("video_id",), ("trace_id",)} <= job_unique
    finally:
        db.close()
    # Per-connection settings, checked on the store's own write connection.
    pragmas = await sqlite_store.connector.writer.submit(lambda db: [
        db.execute(f"PRAGMA {name}").fetchone()[0]
        for name in ("foreign_keys", "busy_timeout", "synchronous", "wal_autocheckpoint",
                     "journal_size_limit")
    ])
    # busy_timeout 0: the writer retries a busy lock on the loop instead of sleeping in SQLite;
    # wal_autocheckpoint 0: checkpoints run on the checkpointer's thread.
    assert pragmas == [1, 0, 1, 0, 64 * 1024 * 1024]


def test_migrations_run_twice_are_harmless(db_path: Path) -> None:
    db = Database(sqlite3.connect(db_path, isolation_level=None))
    sql = queries("sqlite")
    try:
        assert run_sync(migrate(SQLiteTransaction(db), sql)) == migration_names()
        assert run_sync(migrate(SQLiteTransaction(db), sql)) == []
        # Recorded where sqlite-utils (and so the first releases) keep them.
        assert [m.name for m in Migrations("pixhook").applied(db)] == migration_names()
    finally:
        db.close()


async def test_reopening_migrates_nothing(db_path: Path) -> None:
    for _ in range(2):
        async with SQLiteStore(db_path) as store:
            await store.create_job(kind="text_to_video", params={})
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("SELECT count(*) FROM _sqlite_migrations").fetchone() == (
            len(migration_names()),)
        assert raw.execute("SELECT count(*) FROM jobs").fetchone() == (2,)
    finally:
        raw.close()


async def test_a_newer_schema_is_refused(db_path: Path) -> None:
    async with SQLiteStore(db_path):
        pass
    raw = sqlite3.connect(db_path)
    with raw:
        raw.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
                    "VALUES ('pixhook', '0099_from_the_future', 'later')")
    raw.close()
    with pytest.raises(SchemaError, match="0099_from_the_future"):
        await SQLiteStore(db_path).open()


async def test_history_is_append_only(sqlite_store: SQLiteStore,
                                     sqlite_raw: RawDatabase) -> None:
    await sqlite_store.create_job(kind="text_to_video", params={})
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        sqlite_raw.conn.execute("UPDATE transitions SET outcome = 'ignored'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        sqlite_raw.conn.execute("DELETE FROM transitions")


async def test_closed_store_refuses_work(backend: Backend) -> None:
    store = backend.new_store()
    with pytest.raises(StoreClosedError):
        await store.get_job("job_x")
    await store.open()
    await store.close()
    await store.close()  # twice is fine
    with pytest.raises(StoreClosedError):
        await store.create_job(kind="text_to_video", params={})


async def test_close_lets_queued_writes_commit(backend: Backend) -> None:
    store = backend.new_store()
    await store.open()
    pending = [asyncio.ensure_future(store.create_job(kind="k", params={})) for _ in range(50)]
    await asyncio.sleep(0)  # let them all enqueue
    await store.close()
    jobs = await asyncio.gather(*pending)
    async with backend.new_store() as reopened:
        listed, _ = await reopened.list_jobs(limit=100)
    assert {job.id for job in listed} == {job.id for job in jobs}


# -- durability ------------------------------------------------------------------------------


async def test_reopen_keeps_everything(backend: Backend, clock: FakeClock) -> None:
    async with backend.new_store(clock, planner=plans("notify")) as store:
        job = await store.create_job(kind="text_to_video", params={"prompt": "x"})
        await store.update_job(job.id, video_id=MAX_VIDEO_ID)
        result = await store.apply_transition(job.id, JobState.SUCCEEDED, source=WEBHOOK)
        delivery = await store.record_webhook_delivery(
            body=b'{"status":1}', headers={}, outcome=DeliveryOutcome.OK,
            received_at=clock.now, video_id=MAX_VIDEO_ID, job_id=job.id)
        assert await store.claim_nonce("n1", clock.now)
    async with backend.new_store(clock) as store:
        assert await store.get_job(job.id) == result.job
        assert result.job.video_id == MAX_VIDEO_ID
        assert await store.get_job_by_video_id(MAX_VIDEO_ID) is not None
        assert len(await store.list_transitions(job.id)) == 2
        assert [task.handler for task in await store.list_tasks(job_id=job.id)] == ["notify"]
        assert await store.get_webhook_delivery(delivery.id) == delivery
        assert not await store.claim_nonce("n1", clock.now)


def test_a_resolved_write_survives_a_process_crash(db_path: Path) -> None:
    """Once ``await`` returns, the write is committed: killing the process keeps it."""
    script = textwrap.dedent(f"""
        import asyncio, os
        from service.lifecycle import JobState, TransitionSource
        from service.store.sqlite import SQLiteStore

        async def main():
            store = SQLiteStore({str(db_path)!r})
            await store.open()
            job = await store.create_job(kind="text_to_video", params={{}})
            await store.apply_transition(job.id, JobState.GENERATING,
                                         source=TransitionSource.WEBHOOK)
            print(job.id, flush=True)
            os._exit(0)  # no close(), no checkpoint: a crash as far as SQLite knows

        asyncio.run(main())
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=30, cwd=Path(__file__).parents[2], check=True)
    job_id = done.stdout.strip()
    raw = sqlite3.connect(db_path)
    try:
        assert raw.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone() == (
            "generating",)
    finally:
        raw.close()


# -- group commit ----------------------------------------------------------------------------


async def test_group_commit_resolves_after_commit(sqlite_store: SQLiteStore,
                                                  sqlite_raw: RawDatabase) -> None:
    store, raw = sqlite_store, sqlite_raw
    seen: list[bool] = []

    async def write_then_look(i: int) -> None:
        job = await store.create_job(kind="text_to_video", params={"i": i})
        # Another connection sees the row the moment our future resolves.
        seen.append(raw.value("SELECT count(*) FROM jobs WHERE id = ?", job.id) == 1)

    before = store.writer_stats.batches
    await asyncio.wait_for(asyncio.gather(*(write_then_look(i) for i in range(500))), 15)
    assert seen == [True] * 500
    assert raw.value("SELECT count(*) FROM jobs") == 500
    stats = store.writer_stats
    assert stats.batches - before < 500  # writes shared commits
    assert stats.largest_batch > 1


async def test_constraint_errors_are_translated(store: Store) -> None:
    first = await store.create_job(kind="k", params={}, trace_id="trace-1")
    with pytest.raises(ConstraintError):
        await store.create_job(kind="k", params={}, trace_id="trace-1")
    with pytest.raises(ConstraintError):
        await store.create_job(kind="k", params={}, parent_job_id="job_missing")
    child = await store.create_job(kind="extend", params={}, parent_job_id=first.id)
    assert child.parent_job_id == first.id
    assert isinstance(ConstraintError("x"), StorageError)


# -- jobs --------------------------------------------------------------------------------------


async def test_update_job(store: Store, clock: FakeClock) -> None:
    job = await store.create_job(kind="k", params={})
    clock.advance(5)
    updated = await store.update_job(job.id, video_id=MAX_VIDEO_ID, attempts=2,
                                     last_error="timeout", next_attempt_at=clock.now + 30)
    assert (updated.video_id, updated.attempts, updated.last_error) == (
        MAX_VIDEO_ID, 2, "timeout")
    assert updated.next_attempt_at == clock.now + 30
    assert updated.updated_at == clock.now and updated.state is JobState.QUEUED
    assert await store.get_job_by_video_id(MAX_VIDEO_ID) == updated
    assert await store.get_job_by_video_id(MAX_VIDEO_ID - 1) is None

    other = await store.create_job(kind="k", params={})
    with pytest.raises(ConstraintError):
        await store.update_job(other.id, video_id=MAX_VIDEO_ID)
    with pytest.raises(JobNotFoundError):
        await store.update_job("job_missing", attempts=1)
    with pytest.raises(TypeError, match="state"):
        await store.update_job(job.id, state="succeeded")  # type: ignore[call-arg]


async def test_list_jobs_pages_and_filters(store: Store) -> None:
    made = [await store.create_job(kind="a" if i % 3 else "b", params={"i": i})
            for i in range(10)]
    for job in made[:4]:
        await store.apply_transition(job.id, JobState.GENERATING, source=WEBHOOK)

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        page, cursor = await store.list_jobs(limit=3, cursor=cursor)
        pages.append([job.id for job in page])
        if cursor is None:
            break
    assert [len(page) for page in pages] == [3, 3, 3, 1]
    # Newest first, each job exactly once.
    assert [id_ for page in pages for id_ in page] == [job.id for job in reversed(made)]

    exact, cursor = await store.list_jobs(limit=10)
    assert len(exact) == 10 and cursor is None

    generating, _ = await store.list_jobs(state=JobState.GENERATING)
    assert [job.id for job in generating] == [job.id for job in reversed(made[:4])]
    kind_b, _ = await store.list_jobs(kind="b")
    assert {job.id for job in kind_b} == {made[i].id for i in (0, 3, 6, 9)}
    first, cursor = await store.list_jobs(kind="a", state=JobState.QUEUED, limit=2)
    rest, end = await store.list_jobs(kind="a", state=JobState.QUEUED, limit=2, cursor=cursor)
    assert [job.id for job in first + rest] == [made[i].id for i in (8, 7, 5, 4)]
    assert end is None
    with pytest.raises(ValueError, match="limit"):
        await store.list_jobs(limit=0)


async def test_jobs_overdue(store: Store, clock: FakeClock) -> None:
    t0 = clock.now
    quiet = await store.create_job(kind="k", params={})
    await store.apply_transition(quiet.id, JobState.GENERATING, source=WEBHOOK, received_at=t0)
    recent = await store.create_job(kind="k", params={})
    await store.apply_transition(recent.id, JobState.GENERATING, source=WEBHOOK,
                                 received_at=t0 + 100)
    submitting = await store.create_job(kind="k", params={})
    await store.apply_transition(submitting.id, JobState.SUBMITTING,
                                 source=TransitionSource.SUBMIT, received_at=t0 + 10)
    backing_off = await store.create_job(kind="k", params={})
    await store.apply_transition(backing_off.id, JobState.GENERATING, source=WEBHOOK,
                                 received_at=t0)
    await store.update_job(backing_off.id, next_poll_at=t0 + 500)
    done = await store.create_job(kind="k", params={})
    await store.apply_transition(done.id, JobState.SUCCEEDED, source=WEBHOOK, received_at=t0)
    await store.create_job(kind="k", params={})  # queued: the submitter's business

    now, grace = t0 + 120, 60

    async def overdue(at: float, limit: int = 100) -> list[str]:
        # Held for no time (next_poll_at = at), so the same question can be asked again.
        claimed = await store.claim_overdue(at, grace, hold_seconds=0, limit=limit)
        assert all(job.next_poll_at == at for job in claimed)
        return [job.id for job in claimed]

    assert await overdue(now) == [quiet.id, submitting.id]  # longest silent first
    assert await overdue(now, limit=1) == [quiet.id]

    # A poll that finds nothing new is still news: the job is quiet for another grace period.
    await store.apply_transition(quiet.id, JobState.GENERATING, source=TransitionSource.POLL,
                                 received_at=now)
    assert await overdue(now) == [submitting.id]

    later = await overdue(t0 + 600)
    assert set(later) == {quiet.id, recent.id, submitting.id, backing_off.id}


@pytest.mark.parametrize("query", ["jobs_overdue", "claim_overdue"])
async def test_jobs_overdue_uses_its_index(sqlite_store: SQLiteStore,
                                           sqlite_raw: RawDatabase, query: str) -> None:
    store, raw = sqlite_store, sqlite_raw
    for i in range(30):
        job = await store.create_job(kind="k", params={})
        if i % 2:
            await store.apply_transition(job.id, JobState.GENERATING, source=WEBHOOK)
    raw.conn.execute("ANALYZE")
    plan = [
        row[3] for row in raw.conn.execute(
            f"EXPLAIN QUERY PLAN {queries('sqlite')[query]}",
            {"cutoff": 0.0, "now": 0.0, "limit": 10, "hold": 1.0})
    ]
    assert any("USING INDEX jobs_overdue" in step for step in plan), plan
    assert not any(step.startswith("SCAN jobs") for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan  # ordered by the index too


async def test_jobs_due_for_submit(store: Store, clock: FakeClock) -> None:
    ready = await store.create_job(kind="k", params={})
    waiting = await store.create_job(kind="k", params={})
    await store.update_job(waiting.id, next_attempt_at=clock.now + 30)
    leased = await store.create_job(kind="k", params={})
    await store.apply_transition(leased.id, JobState.SUBMITTING, source=TransitionSource.SUBMIT)
    await store.update_job(leased.id, next_attempt_at=clock.now + 60)  # an attempt under way
    accepted = await store.create_job(kind="k", params={})
    await store.apply_transition(accepted.id, JobState.SUBMITTING, source=TransitionSource.SUBMIT)
    await store.update_job(accepted.id, video_id=77)  # PixVerse answered: never re-sent
    assert await store.count_jobs_by_state([JobState.SUBMITTING]) == {JobState.SUBMITTING: 2}
    assert await store.count_jobs_by_state([JobState.QUEUED, JobState.SUBMITTING]) == {
        JobState.QUEUED: 2, JobState.SUBMITTING: 2}

    async def claim(now: float) -> list[str]:
        # A long lease: what one claim took is not due again within this test's first minute.
        claims = await store.claim_submissions(now, limit=10, lease_seconds=1000)
        return [claim.job.id for claim in claims]

    assert await claim(clock.now) == [ready.id]
    assert await claim(clock.now + 30) == [waiting.id]  # its backoff is over
    # An attempt whose lease ran out (the process died mid-call) is due again.
    assert await claim(clock.now + 61) == [leased.id]
    # So is every claim once its lease runs out, oldest job first; an accepted one never.
    assert await claim(clock.now + 2000) == [ready.id, waiting.id, leased.id]
    assert await store.count_jobs_by_state([JobState.QUEUED, JobState.SUBMITTING]) == {
        JobState.SUBMITTING: 4}


# -- webhook deliveries and nonces -------------------------------------------------------------


async def test_claim_nonce_once(store: Store, clock: FakeClock) -> None:
    assert await store.claim_nonce("abc", clock.now)
    assert not await store.claim_nonce("abc", clock.now)
    assert not await store.claim_nonce("abc", None)
    assert await store.claim_nonce("abd", None)
    results = await asyncio.gather(*(store.claim_nonce("race", clock.now) for _ in range(20)))
    assert results.count(True) == 1

    clock.advance(600)
    assert await store.claim_nonce("fresh", clock.now)
    assert await store.prune_nonces(clock.now - 300) == 3  # abc, abd, race
    assert await store.claim_nonce("abc", clock.now)  # forgotten after pruning
    assert not await store.claim_nonce("fresh", clock.now)


async def test_webhook_deliveries(store: Store, clock: FakeClock) -> None:
    job = await store.create_job(kind="k", params={})
    body = b'{"video_id": 9223372036854775807, "status": 1}\xff'
    ok = await store.record_webhook_delivery(
        body=body,
        headers={"Webhook-Nonce": "n", "Webhook-Signature": "sig", "Authorization": "Bearer x",
                 "API-KEY": "secret", "Cookie": "c"},
        outcome=DeliveryOutcome.OK, received_at=clock.now, video_id=MAX_VIDEO_ID,
        job_id=job.id, nonce="n", timestamp=clock.now - 1,
    )
    assert ok.body == body
    assert ok.headers == {"webhook-nonce": "n", "webhook-signature": "sig"}
    assert ok.video_id == MAX_VIDEO_ID and ok.outcome is DeliveryOutcome.OK
    bad = await store.record_webhook_delivery(
        body=b"{}", headers={}, outcome=DeliveryOutcome.BAD_SIGNATURE, received_at=clock.now,
        error="signature mismatch")
    orphan = await store.record_webhook_delivery(
        body=b"{}", headers={}, outcome=DeliveryOutcome.ORPHAN, received_at=clock.now,
        video_id=MAX_VIDEO_ID)

    assert await store.get_webhook_delivery(bad.id) == bad
    assert await store.get_webhook_delivery(10_000) is None
    by_video, cursor = await store.list_webhook_deliveries(video_id=MAX_VIDEO_ID, limit=1)
    assert by_video == [orphan] and cursor == orphan.id
    rest, end = await store.list_webhook_deliveries(video_id=MAX_VIDEO_ID, cursor=cursor)
    assert rest == [ok] and end is None
    assert (await store.list_webhook_deliveries(
        outcome=DeliveryOutcome.BAD_SIGNATURE))[0] == [bad]

    # A transition can point at the delivery that proposed it.
    result = await store.apply_transition(job.id, JobState.SUCCEEDED, source=WEBHOOK,
                                          payload=body.decode(errors="replace"),
                                          delivery_id=ok.id)
    assert (await store.list_transitions(job.id))[-1] == result.transition
    assert result.transition.delivery_id == ok.id


# -- handler tasks ---------------------------------------------------------------------------


async def test_task_queue(store: Store, clock: FakeClock) -> None:
    store.bind(planner=plans("a", "b", "c"))
    job = await store.create_job(kind="k", params={})
    result = await store.apply_transition(job.id, JobState.SUCCEEDED, source=WEBHOOK)
    a, b, c = result.tasks
    claimed = await store.claim_tasks(clock.now, limit=2, lease_seconds=30)
    assert [task.id for task in claimed] == [a.id, b.id]
    assert all(t.state is TaskState.RUNNING and t.attempts == 1 for t in claimed)
    assert [task.id for task in await store.claim_tasks(clock.now)] == [c.id]
    assert await store.claim_tasks(clock.now) == []

    done = await store.complete_task(a.id)
    assert done.state is TaskState.SUCCEEDED and done.lease_until is None
    retry = await store.fail_task(b.id, error="503", retry_at=clock.now + 10)
    assert (retry.state, retry.run_after, retry.last_error) == (
        TaskState.PENDING, clock.now + 10, "503")
    assert await store.claim_tasks(clock.now) == []
    again = await store.claim_tasks(clock.now + 10)
    assert [(t.id, t.attempts) for t in again] == [(b.id, 2)]
    dead = await store.fail_task(b.id, error="gave up", retry_at=None)
    assert dead.state is TaskState.DEAD

    # c's runner vanished: its lease runs out and someone else gets it.
    expired = await store.claim_tasks(clock.now + 61)
    assert [(t.id, t.attempts) for t in expired] == [(c.id, 2)]
    assert [t.id for t in await store.list_tasks(state=TaskState.RUNNING)] == [c.id]
    with pytest.raises(TaskNotFoundError):
        await store.complete_task(10_000)


# -- URLs and in-memory ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///pixhook.db", "pixhook.db"),
        ("sqlite:///data/dir/pixhook.db", "data/dir/pixhook.db"),
        ("sqlite:////var/lib/pixhook.db", "/var/lib/pixhook.db"),
        ("sqlite:///:memory:", ":memory:"),
        ("SQLITE:///x.db", "x.db"),
        ("plain/path.db", "plain/path.db"),
        ("/abs/plain.db", "/abs/plain.db"),
    ],
)
def test_sqlite_urls(url: str, path: str) -> None:
    assert sqlite_path_from_url(url) == path


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://host/db", "unknown scheme"),
        ("sqlite://relative.db", "three slashes"),
        ("sqlite:///", "three slashes"),
        ("", "empty"),
    ],
)
def test_unsupported_urls(url: str, message: str) -> None:
    with pytest.raises(UnsupportedDatabaseError, match=message) as caught:
        connect(url)
    assert caught.value.url == url
    assert isinstance(caught.value, ValueError)


async def test_connect_opens_a_file_store(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "p.db"
    async with connect(f"sqlite:///{path}") as store:  # an absolute path: four slashes
        job = await store.create_job(kind="k", params={})
    assert path.exists()
    async with connect(str(path)) as store:
        assert await store.get_job(job.id) == job


async def test_memory_store_works_end_to_end() -> None:
    async with connect("sqlite:///:memory:", planner=plans("notify")) as store:
        job = await store.create_job(kind="k", params={})
        result = await store.apply_transition(job.id, JobState.GENERATING, source=WEBHOOK)
        assert result.outcome is Outcome.APPLIED
        assert await store.get_job(job.id) == result.job
        assert len(await store.list_tasks()) == 1
        listed, _ = await store.list_jobs()
        assert listed == [result.job]


async def test_unwritable_path_fails_open(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises((StorageError, OSError)):
        await SQLiteStore(blocker / "p.db").open()
