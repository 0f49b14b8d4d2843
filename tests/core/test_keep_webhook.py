"""keep_webhook: a verified webhook no job can take (an unknown status) is kept, with its job
when the video id is known and the reason in ``error``; no job changes; a replay writes
nothing. On SQLite and PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

import pytest

from service.lifecycle import JobState
from service.store import DeliveryOutcome, Store

BODY = b'{"id":"42","status":9}'
ERROR = "unknown PixVerse status 9; the job is unchanged"


def _keep(store: Store, nonce: str, video_id: int | None, error: str = ERROR):
    return store.keep_webhook(body=BODY, headers={"Webhook-Nonce": nonce, "Cookie": "c=1"},
                              nonce=nonce, timestamp=1.0, received_at=2.0,
                              video_id=video_id, error=error)


async def test_kept_with_its_job_and_the_job_unchanged(store: Store) -> None:
    job = await store.create_job(kind="text_to_video", params={"prompt": "x"})
    await store.update_job(job.id, video_id=42)
    await store.apply_transition(job.id, JobState.GENERATING, source="submit")
    before = await store.get_job(job.id), await store.list_transitions(job.id)

    kept = await _keep(store, "n1", 42)

    assert kept.outcome is DeliveryOutcome.OK and kept.transition is None
    assert kept.delivery is not None and kept.delivery.job_id == job.id
    assert (kept.delivery.error, kept.delivery.body, kept.delivery.video_id) == (ERROR, BODY, 42)
    assert "cookie" not in kept.delivery.headers  # credentials never stored
    assert (await store.get_job(job.id), await store.list_transitions(job.id)) == before
    assert await store.list_unapplied_webhooks(job.id) == [kept.delivery]


async def test_a_replay_writes_nothing(store: Store) -> None:
    await _keep(store, "n1", 42)
    again = await _keep(store, "n1", 42)
    assert again.outcome is DeliveryOutcome.DUPLICATE and again.delivery is None
    deliveries, _ = await store.list_webhook_deliveries()
    assert len(deliveries) == 1
    # The nonce is the same one ingest_webhook claims: a replay there is a duplicate too.
    ingest = await store.ingest_webhook(body=BODY, headers={}, nonce="n1", timestamp=1.0,
                                        received_at=2.0, video_id=42,
                                        proposed=JobState.SUCCEEDED)
    assert ingest.outcome is DeliveryOutcome.DUPLICATE


@pytest.mark.parametrize("video_id", [None, 43])
async def test_without_a_job_it_is_an_orphan_the_submitter_cannot_adopt(
        store: Store, video_id: int | None) -> None:
    kept = await _keep(store, "n1", video_id)
    assert kept.outcome is DeliveryOutcome.ORPHAN
    assert kept.delivery is not None and kept.delivery.job_id is None
    orphans, _ = await store.list_webhook_deliveries(outcome=DeliveryOutcome.ORPHAN)
    assert [d.error for d in orphans] == [ERROR]


async def test_only_deliveries_that_changed_nothing_are_listed_with_a_job(store: Store) -> None:
    job = await store.create_job(kind="text_to_video", params={"prompt": "x"})
    await store.update_job(job.id, video_id=42)
    await store.apply_transition(job.id, JobState.GENERATING, source="submit")
    await store.ingest_webhook(body=b"{}", headers={}, nonce="applied", timestamp=1.0,
                               received_at=2.0, video_id=42, proposed=JobState.SUCCEEDED)
    first = await _keep(store, "n1", 42)
    second = await _keep(store, "n2", 42, error="status 'done' is not a PixVerse status code")
    await _keep(store, "n3", 43)  # another video's
    listed = await store.list_unapplied_webhooks(job.id)
    assert listed == [first.delivery, second.delivery]  # oldest first
    assert await store.list_unapplied_webhooks(job.id, limit=1) == [first.delivery]
