"""What is PostgreSQL's own: migrations, URLs, and safety across replicas.

Two :class:`PostgresStore` instances on one schema stand for two replicas (web or worker
processes on different machines): each has its own pool and its own LISTEN connection, so
nothing they share but the database can make these tests pass.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator

import pytest

psycopg = pytest.importorskip("psycopg")

from service.lifecycle import JobState, Outcome, TransitionSource
from service.store import (
    DeliveryOutcome,
    Job,
    JobNotFoundError,
    SchemaError,
    StorageError,
    Transition,
    UnsupportedDatabaseError,
    connect,
    sqlite_path_from_url,
)
from service.store.postgres import PostgresStore
from service.store.sql import migration_names, queries
from tests.core.conftest import FakeClock, with_search_path
from tests.support.planner import plans

WEBHOOK = TransitionSource.WEBHOOK


def download(job: Job, transition: Transition) -> list[str]:
    return ["download"]


@pytest.fixture
async def replicas(postgres_schema: str) -> AsyncIterator[tuple[PostgresStore, PostgresStore]]:
    async with PostgresStore(postgres_schema) as one, PostgresStore(postgres_schema) as two:
        yield one, two


async def succeeded_jobs(store: PostgresStore, count: int, handlers: int) -> None:
    """``count`` succeeded jobs with a task for each of ``handlers`` handlers (``h0``, ...);
    binds the planner that names them to ``store``."""
    store.bind(planner=plans(*(f"h{i}" for i in range(handlers))))
    for _ in range(count):
        job = await store.create_job(kind="text_to_video", params={})
        await store.apply_transition(job.id, JobState.SUCCEEDED, source=WEBHOOK)


# -- URLs --------------------------------------------------------------------------------------


def test_connect_selects_postgres_and_reads_pool_sizes() -> None:
    store = connect("postgres://u:secret@db.internal:5433/pixhook?sslmode=require"
                    "&pool_min_size=2&pool_max_size=20")
    assert isinstance(store, PostgresStore)
    assert (store.min_size, store.max_size) == (2, 20)
    # libpq gets its own options only, under the scheme it knows.
    assert store.conninfo == "postgresql://u:secret@db.internal:5433/pixhook?sslmode=require"
    assert "secret" not in repr(store)
    default = connect("postgresql://db.internal/pixhook")
    assert isinstance(default, PostgresStore)
    assert (default.min_size, default.max_size) == (1, 10)
    assert connect("postgresql+psycopg://h/db").conninfo == "postgresql://h/db"  # type: ignore[attr-defined]


@pytest.mark.parametrize("query", ["pool_min_size=x", "pool_min_size=0",
                                   "pool_min_size=5&pool_max_size=2"])
def test_bad_pool_sizes_are_refused(query: str) -> None:
    with pytest.raises(UnsupportedDatabaseError, match="pool_m"):
        connect(f"postgresql://h/db?{query}")


def test_a_postgres_url_names_no_sqlite_file() -> None:
    with pytest.raises(UnsupportedDatabaseError, match="connect"):
        sqlite_path_from_url("postgresql://h/db")


def test_without_psycopg_connect_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    # What an installation without the extra sees: the modules cannot be imported.
    monkeypatch.setitem(sys.modules, "psycopg", None)
    monkeypatch.delitem(sys.modules, "service.store.postgres")
    with pytest.raises(UnsupportedDatabaseError, match=r"pip install 'pixhook\[postgres\]'"):
        connect("postgresql://h/db")


async def test_an_unreachable_server_fails_open() -> None:
    store = PostgresStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1",
                          open_timeout=1.0)
    with pytest.raises(StorageError):
        await store.open()


# -- migrations --------------------------------------------------------------------------------


@pytest.mark.postgres
async def test_migrations_are_recorded_and_run_once(postgres_schema: str) -> None:
    for _ in range(2):
        async with PostgresStore(postgres_schema) as store:
            await store.create_job(kind="k", params={})
    with psycopg.connect(postgres_schema) as conn:
        names = [row[0] for row in conn.execute("SELECT name FROM pixhook_migrations")]
        assert names == migration_names()
        assert conn.execute("SELECT count(*) FROM jobs").fetchone() == (2,)


@pytest.mark.postgres
async def test_replicas_starting_together_migrate_once(postgres_schema: str) -> None:
    stores = [PostgresStore(postgres_schema) for _ in range(5)]
    await asyncio.gather(*(store.open() for store in stores))
    try:
        job = await stores[0].create_job(kind="k", params={})
        assert await stores[4].get_job(job.id) == job
    finally:
        await asyncio.gather(*(store.close() for store in stores))
    with psycopg.connect(postgres_schema) as conn:
        count = conn.execute("SELECT count(*) FROM pixhook_migrations").fetchone()
    assert count == (len(migration_names()),)


@pytest.mark.postgres
async def test_a_newer_schema_is_refused(postgres_schema: str) -> None:
    async with PostgresStore(postgres_schema):
        pass
    with psycopg.connect(postgres_schema) as conn:
        conn.execute("INSERT INTO pixhook_migrations VALUES ('0099_from_the_future', 0)")
    with pytest.raises(SchemaError, match="0099_from_the_future"):
        await PostgresStore(postgres_schema).open()


@pytest.mark.postgres
async def test_history_is_append_only(postgres_schema: str) -> None:
    async with PostgresStore(postgres_schema) as store:
        await store.create_job(kind="k", params={})
    with psycopg.connect(postgres_schema, autocommit=True) as conn:
        for sql in ("UPDATE transitions SET outcome = 'ignored'", "DELETE FROM transitions",
                    "TRUNCATE transitions CASCADE"):
            with pytest.raises(psycopg.errors.IntegrityError, match="append-only"):
                conn.execute(sql)


@pytest.mark.postgres
async def test_queue_and_reconciler_queries_can_use_their_indexes(postgres_schema: str) -> None:
    async with PostgresStore(postgres_schema) as store:
        await succeeded_jobs(store, 3, 2)
    sql = queries("postgres")

    with psycopg.connect(postgres_schema) as conn:
        conn.execute("SET enable_seqscan = off")  # a tiny table would be scanned otherwise
        def plan(sql: str, params: dict[str, float]) -> str:
            return "\n".join(row[0] for row in conn.execute(f"EXPLAIN {sql}", params))

        claim = plan(sql["claim_tasks"], {"now": 0.0, "lease_until": 1.0, "limit": 10})
        assert "tasks_pending" in claim and "tasks_running" in claim, claim
        overdue = plan(sql["jobs_overdue"], {"cutoff": 0.0, "now": 0.0, "limit": 10})
        assert "jobs_overdue" in overdue, overdue
        # What the reconciler runs: the same search, holding what it finds.
        claim_overdue = plan(sql["claim_overdue"],
                             {"cutoff": 0.0, "now": 0.0, "limit": 10, "hold": 1.0})
        assert "jobs_overdue" in claim_overdue, claim_overdue
        submit = plan(sql["jobs_due_for_submit"], {"now": 0.0, "limit": 10})
        assert "jobs_submittable" in submit, submit
        conn.rollback()


# -- across replicas ---------------------------------------------------------------------------


@pytest.mark.postgres
async def test_concurrent_claims_never_share_a_task(
        replicas: tuple[PostgresStore, PostgresStore]) -> None:
    one, two = replicas
    await succeeded_jobs(one, 40, 3)  # 120 tasks
    claimed: list[int] = []

    async def drain(store: PostgresStore) -> None:
        while batch := await store.claim_tasks(time.time(), limit=4):
            claimed.extend(task.id for task in batch)

    await asyncio.gather(*(drain(store) for store in (one, two, one, two, one, two)))
    assert len(claimed) == len(set(claimed)) == 120
    # A lease that ran out is taken over exactly once too.
    expired: list[int] = []

    async def reclaim(store: PostgresStore) -> None:
        expired.extend(t.id for t in await store.claim_tasks(time.time() + 3600, limit=100))

    await asyncio.gather(*(reclaim(store) for store in (one, two, one, two)))
    assert sorted(expired) == sorted(claimed)


@pytest.mark.postgres
async def test_the_same_delivery_on_two_replicas_is_taken_once(
        replicas: tuple[PostgresStore, PostgresStore]) -> None:
    one, two = replicas
    for replica in replicas:
        replica.bind(planner=download)
    job = await one.create_job(kind="text_to_video", params={})
    await one.update_job(job.id, video_id=2**63 - 1)

    def ingest(store: PostgresStore, nonce: str):  # type: ignore[no-untyped-def]
        return store.ingest_webhook(
            body=b'{"status":1}', headers={}, nonce=nonce, timestamp=1.0, received_at=2.0,
            video_id=2**63 - 1, proposed=JobState.SUCCEEDED)

    # The same nonce (a replayed request) from ten deliveries: recorded once.
    replayed = await asyncio.gather(*(ingest((one, two)[i % 2], "n1") for i in range(10)))
    assert [r.outcome for r in replayed].count(DeliveryOutcome.OK) == 1
    assert [r.outcome for r in replayed].count(DeliveryOutcome.DUPLICATE) == 9
    assert len((await one.list_webhook_deliveries())[0]) == 1

    # The same event under new nonces (PixVerse retrying): applied once, one task.
    job2 = await one.create_job(kind="text_to_video", params={})
    await one.update_job(job2.id, video_id=7)
    results = await asyncio.gather(*(
        (one, two)[i % 2].ingest_webhook(
            body=b'{"status":1}', headers={}, nonce=f"m{i}", timestamp=1.0, received_at=2.0,
            video_id=7, proposed=JobState.SUCCEEDED)
        for i in range(10)))
    outcomes = [r.transition.outcome for r in results if r.transition is not None]
    assert outcomes.count(Outcome.APPLIED) == 1 and outcomes.count(Outcome.DUPLICATE) == 9
    assert len(await two.list_tasks(job_id=job2.id)) == 1


@pytest.mark.postgres
async def test_no_orphan_slips_between_the_video_id_and_its_adoption(
        replicas: tuple[PostgresStore, PostgresStore]) -> None:
    """The race submission's orphan adoption depends on: a webhook for a video id arrives
    while the submitter records that id. Whatever the interleaving, the delivery is either
    matched to the job, or visible as an orphan once update_job has returned."""
    one, two = replicas
    for video_id in range(1000, 1060):
        job = await one.create_job(kind="text_to_video", params={})

        async def assign(job_id: str = job.id, video_id: int = video_id) -> list[int]:
            await one.update_job(job_id, video_id=video_id)
            orphans, _ = await one.list_webhook_deliveries(
                video_id=video_id, outcome=DeliveryOutcome.ORPHAN)
            return [delivery.id for delivery in orphans]

        orphans, ingest = await asyncio.gather(assign(), two.ingest_webhook(
            body=b'{"status":5}', headers={}, nonce=f"n{video_id}", timestamp=1.0,
            received_at=2.0, video_id=video_id, proposed=JobState.GENERATING))
        if ingest.outcome is DeliveryOutcome.ORPHAN:
            assert ingest.delivery is not None and orphans == [ingest.delivery.id]
        else:
            assert ingest.outcome is DeliveryOutcome.OK and orphans == []


@pytest.mark.postgres
async def test_a_task_queued_elsewhere_wakes_a_waiting_store(
        replicas: tuple[PostgresStore, PostgresStore]) -> None:
    worker, web = replicas
    web.bind(planner=download)
    await worker.wait_for_tasks(0)  # start from a cleared event
    job = await web.create_job(kind="text_to_video", params={})

    async def queue_soon() -> None:
        await asyncio.sleep(0.2)
        await web.apply_transition(job.id, JobState.SUCCEEDED, source=WEBHOOK)

    started = time.monotonic()
    await asyncio.gather(worker.wait_for_tasks(10), queue_soon())
    assert 0.15 < time.monotonic() - started < 5

    # Reviving a dead task elsewhere wakes it too; nothing else does.
    [task] = await worker.claim_tasks(time.time())
    await worker.fail_task(task.id, error="down", retry_at=None)
    await worker.wait_for_tasks(0)
    started = time.monotonic()
    await asyncio.gather(worker.wait_for_tasks(10), web.retry_task(task.id))
    assert time.monotonic() - started < 5
    started = time.monotonic()
    await worker.wait_for_tasks(0.3)
    assert time.monotonic() - started >= 0.25


@pytest.mark.postgres
async def test_a_deployment_in_another_schema_does_not_wake_this_one(
        replicas: tuple[PostgresStore, PostgresStore], postgres_server: str) -> None:
    """NOTIFY channels are per database; each schema has its own channel."""
    worker, _ = replicas
    other_schema = f"t_other_{time.monotonic_ns()}"
    with psycopg.connect(postgres_server, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {other_schema}")
    try:
        async with PostgresStore(with_search_path(postgres_server, other_schema),
                                 planner=download) as other:
            await worker.wait_for_tasks(0)  # start from a cleared event
            job = await other.create_job(kind="text_to_video", params={})
            result = await other.apply_transition(job.id, JobState.SUCCEEDED, source=WEBHOOK)
            assert result.tasks  # a task was queued (and NOTIFY sent) in the other schema
            started = time.monotonic()
            await worker.wait_for_tasks(0.5)
            assert time.monotonic() - started >= 0.45  # not woken by the other schema
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as admin:
            admin.execute(f"DROP SCHEMA {other_schema} CASCADE")


@pytest.mark.postgres
async def test_fake_clock_and_exact_values_round_trip(postgres_schema: str,
                                                      clock: FakeClock) -> None:
    clock.now = 1_700_000_000.123456789
    async with PostgresStore(postgres_schema, clock=clock) as store:
        job = await store.create_job(kind="k", params={"z": 1, "a": [1.5, None]},
                                     labels={"b": "2", "a": "1"})
        assert job.created_at == clock.now
        assert list(job.params) == ["z", "a"] and list(job.labels) == ["b", "a"]
        assert await store.get_job(job.id) == job


@pytest.mark.postgres
async def test_connections_the_server_dropped_are_replaced(postgres_schema: str) -> None:
    """A database restart or failover drops every connection; the next operations work."""
    name = f"pixhook_test_{time.monotonic_ns()}"
    separator = "&" if "?" in postgres_schema else "?"
    async with PostgresStore(f"{postgres_schema}{separator}application_name={name}",
                             min_size=2) as store:
        first = await store.create_job(kind="k", params={})
        with psycopg.connect(postgres_schema, autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = %s) AS t", [name]).fetchone()
        assert killed is not None and killed[0] >= 2  # the pool's and the listener's
        # Every pooled connection is dead now; each operation still succeeds.
        for _ in range(4):
            job = await store.get_job(first.id)
            assert job is not None and job.id == first.id
        assert (await store.create_job(kind="k", params={})).id != first.id


@pytest.mark.postgres
async def test_statements_prepared_in_a_failed_query_are_found_again(
        postgres_schema: str) -> None:
    """The webhook batch prepares its statements once per connection (PREPARE is not
    transactional): after a query that failed half-way, the connection goes on with those
    that were prepared and prepares the others."""
    async with PostgresStore(postgres_schema, min_size=1, max_size=1) as store:
        async def failing(tx):  # type: ignore[no-untyped-def]
            await tx.run_together([("SELECT 1 AS one", {}), ("SELECT 1 / 0 AS never", {}),
                                   ("SELECT CAST(%(a)s AS int) AS a", {"a": 2})])

        with pytest.raises(StorageError, match="division by zero"):
            await store.connector._run(failing, explicit=True)

        async def working(tx):  # type: ignore[no-untyped-def]
            return await tx.run_together([("SELECT 1 AS one", {}),
                                          ("SELECT CAST(%(a)s AS int) AS a", {"a": 3})],
                                         commit=True)

        assert await store.connector._run(working, explicit=True) == [[{"one": 1}],
                                                                       [{"a": 3}]]


@pytest.mark.postgres
async def test_webhook_batches_survive_a_rollback_that_deallocates_everything(
        postgres_schema: str) -> None:
    """psycopg answers a rollback with DEALLOCATE ALL on a connection where it prepared
    statements of its own; the webhook batch's prepared statements go with them, and the next
    batch on that connection prepares them again instead of failing."""
    async with PostgresStore(postgres_schema, min_size=1, max_size=1,
                             planner=download) as store:
        job = await store.create_job(kind="text_to_video", params={})
        await store.update_job(job.id, video_id=77)
        for _ in range(6):  # psycopg prepares a statement run 5 times
            await store.get_job(job.id)

        def ingest(nonce: str, state: JobState):  # type: ignore[no-untyped-def]
            return store.ingest_webhook(body=b'{"status":5}', headers={}, nonce=nonce,
                                        timestamp=1.0, received_at=2.0, video_id=77,
                                        proposed=state)

        assert (await ingest("n1", JobState.GENERATING)).outcome is DeliveryOutcome.OK
        with pytest.raises(JobNotFoundError):  # rolled back on the one connection
            await store.apply_transition("job_missing", JobState.FAILED, source=WEBHOOK)
        result = await ingest("n2", JobState.SUCCEEDED)
        assert result.transition is not None and result.transition.applied
