"""What ``/api`` shows of a job leaks no secret and no server path: ``callback_url`` without
credentials and with secret-looking query values masked, and the downloaded video as its
signed link instead of ``media_path``."""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.lifecycle import JobState
from service.store import SQLiteStore, Store, connect
from service.store.connector import Operation, Transaction
from tests.api.support import AUTH, T2V, api_app
from tests.support.planner import plans
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
    download with a job that has no video (one snapshot: ``Store.job_history``)."""
    async with connect(database_url, planner=plans("download")) as store:
        job = await store.create_job(kind="text_to_video", params=T2V)
        await store.apply_transition(job.id, JobState.SUCCEEDED, source="webhook")
        [task] = await store.claim_tasks(time.time())
    if database_url.startswith("sqlite"):
        other: Any = sqlite3.connect(database_url.removeprefix("sqlite:///"),
                                     check_same_thread=False)
        mark = "?"
    else:
        import psycopg
        other, mark = psycopg.connect(database_url, autocommit=True), "%s"

    def worker_finishes() -> None:  # on another connection, as the worker process would
        other.execute(f"UPDATE jobs SET media_sha256 = {mark}, media_size = 1 "
                      f"WHERE id = {mark}", ("ab" * 32, job.id))
        other.execute(f"UPDATE tasks SET state = 'succeeded' WHERE id = {mark}", (task.id,))
        other.commit()

    # The worker finishes after the view has read the job, before it reads the tasks.
    read_tasks = Store._tasks
    finished: list[bool] = []

    def tasks_after_the_worker(self: Store, **query: Any) -> Operation[Any]:
        op = read_tasks(self, **query)

        async def after(tx: Transaction) -> Any:
            if not finished:
                finished.append(True)
                worker_finishes()
            return await op(tx)

        return after

    monkeypatch.setattr(Store, "_tasks", tasks_after_the_worker)
    try:
        async with api_app(database_url) as url, httpx.AsyncClient(timeout=30) as http:
            shown = (await http.get(f"{url}/api/jobs/{job.id}", headers=AUTH)).json()
            again = (await http.get(f"{url}/api/jobs/{job.id}", headers=AUTH)).json()
    finally:
        other.close()
    assert finished
    assert [t["state"] for t in shown["tasks"]] == ["running"], shown
    assert shown["media_sha256"] is None
    assert [t["state"] for t in again["tasks"]] == ["succeeded"]
    assert again["media_sha256"] == "ab" * 32
