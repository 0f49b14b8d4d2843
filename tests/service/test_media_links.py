"""``GET /media/{token}``: signed, expiring links to downloaded videos."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from service.media import MediaLinks
from service.settings import Settings
from service.store import Job, SQLiteStore
from tests.support.servers import running_server

VIDEO = b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(tmp_path / "pixhook.db") as opened:
        yield opened


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(media_dir=str(tmp_path / "media"), secret_key="k" * 32,
                    public_url="https://pixhook.example.com/")


async def _downloaded_job(store: SQLiteStore, settings: Settings, name: str = "v.mp4") -> Job:
    job = await store.create_job(kind="text_to_video", params={})
    path = Path(settings.media_dir) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(VIDEO)
    return await store.update_job(job.id, media_path=str(path.resolve()))


async def _get(settings: Settings, store: SQLiteStore, path: str) -> httpx.Response:
    app = Starlette(routes=MediaLinks(settings, store).routes())
    async with running_server(app) as url, httpx.AsyncClient() as http:
        return await http.get(url + path)


async def test_a_signed_link_serves_the_video(store: SQLiteStore, settings: Settings) -> None:
    job = await _downloaded_job(store, settings)
    links = MediaLinks(settings, store)
    link = links.url(job.id)
    assert link is not None and link.startswith("https://pixhook.example.com/media/")
    assert links.job_id(link.rsplit("/", 1)[1]) == job.id
    response = await _get(settings, store, "/media/" + links.token(job.id))
    assert response.status_code == 200 and response.content == VIDEO
    assert response.headers["content-type"] == "video/mp4"


@pytest.mark.parametrize("mangle", [
    lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
    lambda token: "not-a-token",
])
async def test_a_tampered_token_is_404(store: SQLiteStore, settings: Settings, mangle) -> None:
    job = await _downloaded_job(store, settings)
    token = mangle(MediaLinks(settings, store).token(job.id))
    assert (await _get(settings, store, "/media/" + token)).status_code == 404


async def test_a_token_signed_with_another_key_is_404(store: SQLiteStore,
                                                      settings: Settings) -> None:
    job = await _downloaded_job(store, settings)
    forged = MediaLinks(dataclasses.replace(settings, secret_key="x" * 32)).token(job.id)
    assert (await _get(settings, store, "/media/" + forged)).status_code == 404


async def test_an_expired_link_is_410(store: SQLiteStore, settings: Settings) -> None:
    job = await _downloaded_job(store, settings)
    expired = dataclasses.replace(settings, media_link_ttl=-1.0)
    token = MediaLinks(expired, store).token(job.id)
    response = await _get(expired, store, "/media/" + token)
    assert response.status_code == 410 and "expired" in response.text


async def test_files_outside_the_media_dir_are_never_served(store: SQLiteStore,
                                                            settings: Settings,
                                                            tmp_path: Path) -> None:
    job = await store.create_job(kind="text_to_video", params={})
    secret = tmp_path / "pixhook.db"
    await store.update_job(job.id, media_path=str(secret))
    token = MediaLinks(settings, store).token(job.id)
    assert (await _get(settings, store, "/media/" + token)).status_code == 404


async def test_no_public_url_means_no_link(settings: Settings) -> None:
    assert MediaLinks(dataclasses.replace(settings, public_url="")).url("job") is None
