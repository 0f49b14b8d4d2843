"""Dashboard sessions in the store, on SQLite and PostgreSQL: only a hash of each id is kept,
and a session ends when revoked or expired, for every process on the database. (The store
fixtures come from tests/core/conftest.py, through this directory's conftest.)"""

from __future__ import annotations

from service.store import Store
from service.store.sessions import session_hash
from tests.core.conftest import Backend, FakeClock, RawDatabase

TTL = 3600.0


async def test_a_session_is_stored_by_hash_only(store: Store, raw: RawDatabase,
                                                clock: FakeClock) -> None:
    session_id, created = await store.create_dashboard_session(ttl_seconds=TTL,
                                                               token_fingerprint="fp")
    assert len(session_id) >= 40
    assert created.created_at == clock.now and created.expires_at == clock.now + TTL
    assert created.revoked_at is None and created.token_fingerprint == "fp"
    [row] = raw.rows("SELECT * FROM dashboard_sessions")
    assert session_hash(session_id) in row
    assert not any(session_id in str(value) for value in row)
    assert await store.live_dashboard_session(session_id) == created
    assert await store.live_dashboard_session(session_id[:-1] + "x") is None


async def test_a_revoked_session_is_over_for_every_process(store: Store, backend: Backend,
                                                           clock: FakeClock) -> None:
    session_id, _ = await store.create_dashboard_session(ttl_seconds=TTL,
                                                         token_fingerprint="fp")
    other, _ = await store.create_dashboard_session(ttl_seconds=TTL, token_fingerprint="fp")
    async with backend.new_store(clock) as replica:
        assert await replica.live_dashboard_session(session_id) is not None
        assert await replica.revoke_dashboard_session(session_id) is True
    assert await store.live_dashboard_session(session_id) is None
    assert await store.revoke_dashboard_session(session_id) is False  # once is enough
    assert await store.revoke_dashboard_session("never-issued") is False
    assert await store.live_dashboard_session(other) is not None  # only that one


async def test_a_session_expires_and_is_pruned(store: Store, raw: RawDatabase,
                                               clock: FakeClock) -> None:
    session_id, _ = await store.create_dashboard_session(ttl_seconds=TTL,
                                                         token_fingerprint="fp")
    clock.advance(TTL - 1)
    assert await store.live_dashboard_session(session_id) is not None
    clock.advance(1)
    assert await store.live_dashboard_session(session_id) is None
    assert raw.value("SELECT count(*) FROM dashboard_sessions") == 1
    await store.create_dashboard_session(ttl_seconds=TTL, token_fingerprint="fp")
    assert raw.value("SELECT count(*) FROM dashboard_sessions") == 1  # the expired one went
    assert raw.value("SELECT count(*) FROM dashboard_sessions WHERE id_sha256 = ?",
                     session_hash(session_id)) == 0
