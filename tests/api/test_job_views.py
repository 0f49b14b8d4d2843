"""What ``/api`` shows of a job leaks no secret and no server path: ``callback_url`` without
credentials and with secret-looking query values masked, and the downloaded video as its
signed link instead of ``media_path``."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.lifecycle import JobState
from service.store import Job, SQLiteStore, Store, connect
from tests.support.planner import plans
from tests.api.support import AUTH, T2V, api_app
from tests.support.servers import free_port

CALLBACK = ("https://hooks.example.com/in?token=abc&x=1&api_key=k1&Signature=s1&sig=s2"
            "&password=p&Authorization=a&client_secret=s3&user=me#frag")
SHOWN = ("https://hooks.example.com/in?token=***&x=1&api_key=***&Signature=***&sig=***"
         "&password=***&Authorization=***&client_secret=***&user=me#***")


async def _views(http: httpx.AsyncClient, url: str, job_id: str) -> list[dict[str, Any]]:
    """The job as GET /api/jobs/{id} and GET /api/jobs show it."""
    one = await http.get(f"{url}/api/jobs/{job_id}", headers=AUTH)
    listed = await http.get(f"{url}/api/jobs", headers=AUTH)
    assert one.status_code == listed.status_code == 200
    return [one.json(), *[j for j in listed.json()["jobs"] if j["id"] == job_id]]


async def test_callback_url_is_shown_masked(tmp_path: Path) -> None:
    async with api_app(f"sqlite:///{tmp_path / 'pixhook.db'}") as url, \
            httpx.AsyncClient(timeout=30) as http:
        created = await http.post(f"{url}/api/jobs", headers=AUTH, json={
            "kind": "text_to_video", "params": T2V, "callback_url": CALLBACK})
        assert created.status_code == 201, created.text
        assert created.json()["callback_url"] == SHOWN
        views = await _views(http, url, created.json()["id"])
        assert [view["callback_url"] for view in views] == [SHOWN, SHOWN]


async def test_credentials_stored_in_a_callback_url_never_show(tmp_path: Path) -> None:
    db = tmp_path / "pixhook.db"
    async with SQLiteStore(db) as store:  # accepted by an older release
        job = await store.create_job(kind="text_to_video", params=T2V,
                                     callback_url="http://user:hunter2@hooks.example.com:8080/x")
    async with api_app(f"sqlite:///{db}") as url, httpx.AsyncClient(timeout=30) as http:
        views = await _views(http, url, job.id)
    assert [view["callback_url"] for view in views] == ["http://hooks.example.com:8080/x"] * 2


async def test_the_video_is_a_signed_link_not_a_server_path(tmp_path: Path) -> None:
    db, media = tmp_path / "pixhook.db", tmp_path / "media"
    media.mkdir()
    video = media / "job.mp4"
    video.write_bytes(b"not really a video")
    digest = hashlib.sha256(video.read_bytes()).hexdigest()
    async with SQLiteStore(db) as store:
        job = await store.create_job(kind="text_to_video", params=T2V)
        await store.update_job(job.id, media_path=str(video), media_sha256=digest,
                               media_size=18)
        plain = await store.create_job(kind="text_to_video", params=T2V)
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    async with api_app(f"sqlite:///{db}", port=port, public_url=public,
                       media_dir=str(media)) as url, httpx.AsyncClient(timeout=30) as http:
        views = await _views(http, url, job.id)
        for view in views:
            assert "media_path" not in view and str(tmp_path) not in str(view)
            assert view["media_sha256"] == digest and view["media_size"] == 18
            assert view["media_url"].startswith(f"{public}/media/")
            served = await http.get(view["media_url"])
            assert served.status_code == 200 and served.content == b"not really a video"
        assert [view["media_url"] for view in await _views(http, url, plain.id)] == [None] * 2
    # Without PIXHOOK_PUBLIC_URL there is no link to give, and still no path.
    async with api_app(f"sqlite:///{db}", media_dir=str(media)) as url, \
            httpx.AsyncClient(timeout=30) as http:
        for view in await _views(http, url, job.id):
            assert view["media_url"] is None and "media_path" not in view


async def test_a_job_never_shows_less_than_its_tasks(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A handler records its result on the job, then its task succeeds. The worker may do
    both while ``GET /api/jobs/{id}`` is reading; the answer must never pair a succeeded
    download with a job that has no video (the job is read after its tasks)."""
    async with connect(database_url, planner=plans("download")) as store:
        job = await store.create_job(kind="text_to_video", params=T2V)
        await store.apply_transition(job.id, JobState.SUCCEEDED, source="webhook")
        [task] = await store.claim_tasks(time.time())

        async def worker_finishes() -> None:
            await store.update_job(job.id, media_path="/media/v.mp4", media_sha256="ab" * 32,
                                   media_size=1)
            await store.complete_task(task.id, attempt=task.attempts)

        # The worker finishes right after the view's first read of the job.
        read_job = Store.get_job
        finished: list[bool] = []

        async def get_job_then_finish(self: Store, job_id: str) -> Job | None:
            found = await read_job(self, job_id)
            if not finished:
                finished.append(True)
                await worker_finishes()
            return found

        monkeypatch.setattr(Store, "get_job", get_job_then_finish)
        async with api_app(database_url) as url, httpx.AsyncClient(timeout=30) as http:
            shown = (await http.get(f"{url}/api/jobs/{job.id}", headers=AUTH)).json()
        assert finished
        [shown_task] = shown["tasks"]
        if shown_task["state"] == "succeeded":
            assert shown["media_sha256"] == "ab" * 32, shown
