"""Input ``/api`` cannot store or serve is refused before anything is committed: a 4xx naming
the field, never a 5xx, and the job list keeps working. Each test runs on SQLite and
PostgreSQL (NUL is fatal only to PostgreSQL; a lone surrogate only to the response)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from service.store import SQLiteStore
from tests.api.support import AUTH, T2V, api_app


async def _post(http: httpx.AsyncClient, url: str, body: bytes | dict[str, Any],
                **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await http.post(f"{url}/api/jobs", content=content,
                           headers={**AUTH, "Content-Type": "application/json", **headers})


async def _jobs(http: httpx.AsyncClient, url: str) -> list[dict[str, Any]]:
    listed = await http.get(f"{url}/api/jobs", params={"limit": 200}, headers=AUTH)
    assert listed.status_code == 200, listed.text
    return list(listed.json()["jobs"])


# Raw bodies: json.dumps would not let a test write these as Python values.
SURROGATE = '"\\ud83d abc"'
REFUSED_BODIES = [
    (f'{{"kind": "text_to_video", "params": {{"prompt": {SURROGATE}, "model": "v6", '
     '"duration": 5, "quality": "540p", "aspect_ratio": "16:9"}}', "params.prompt"),
    (f'{{"kind": "text_to_video", "params": {json.dumps(T2V)}, "labels": {{"team": '
     f'{SURROGATE}}}}}', "labels.team"),
    (f'{{"kind": "text_to_video", "params": {json.dumps(T2V)}, "labels": {{{SURROGATE}: '
     '"x"}}', "labels"),
    (f'{{"kind": {SURROGATE}, "params": {{}}}}', "kind"),
    (f'{{"kind": "text_to_video", "params": {json.dumps(T2V)}, "then": [{{"kind": "extend", '
     f'"params": {{"prompt": {SURROGATE}}}}}]}}', "then[0].params.prompt"),
    ('{"kind": "text_to_video", "params": {"prompt": "a\\u0000b", "model": "v6", '
     '"duration": 5, "quality": "540p", "aspect_ratio": "16:9"}}', "params.prompt"),
    (f'{{"kind": "text_to_video", "params": {json.dumps(T2V)}, '
     '"callback_url": "http://hooks.example.com/\\u0000"}', "callback_url"),
    ('{"kind": "text_to_video", oops', "body"),  # not JSON at all
    ('{"kind": "text_to_video", "params": NaN}', "body"),  # not JSON either
    ('{"kind": "text_to_video", "params": {"prompt": "p", "model": "v6", "duration": 5, '
     '"quality": "540p", "aspect_ratio": "16:9", "seed": 1e999}}', "params.seed"),
    # Past the parser's stack (body), or parsed and refused by depth (params): never a 500.
    ('{"kind": "text_to_video", "params": {"x": ' + "[" * 1000 + "]" * 1000 + "}}",
     ("body", "params")),
    ('{"kind": "text_to_video", "params": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}",
     "body"),
    ('{"kind": "text_to_video", "params": {"x": ' + "[" * 40 + "]" * 40 + "}}", "params"),
]


async def test_unstorable_or_unservable_input_is_a_4xx_naming_the_field(
        database_url: str) -> None:
    async with api_app(database_url) as url, httpx.AsyncClient(timeout=30) as http:
        for body, field in REFUSED_BODIES:
            response = await _post(http, url, body.encode())
            assert response.status_code == 422, (body[:120], response.status_code,
                                                 response.text)
            assert response.json()["field"] in ((field,) if isinstance(field, str) else field), \
                (body[:120], response.json())
        assert await _jobs(http, url) == []  # nothing was committed


def _labels(n: int) -> dict[str, str]:
    return {f"k{i}": "v" for i in range(n)}


@pytest.mark.parametrize(("extra", "field"), [
    ({"labels": _labels(65)}, "labels"),
    ({"labels": {"k" * 129: "v"}}, "labels"),
    ({"labels": {"k": "v" * 1025}}, "labels.k"),
    ({"callback_url": "http://user:secret@hooks.example.com/in"}, "callback_url"),
    ({"callback_url": "https://token@hooks.example.com/in"}, "callback_url"),
    ({"callback_url": "https://hooks.example.com/" + "a" * 2048}, "callback_url"),
    ({"callback_url": "https://hooks.example.com:99999/in"}, "callback_url"),
    ({"callback_url": "https:///no-host"}, "callback_url"),
    ({"then": [{"kind": "extend", "params": {"prompt": "p"}}] * 17}, "then"),
])
async def test_sizes_and_credentials_are_bounded(database_url: str, extra: dict[str, Any],
                                                 field: str) -> None:
    async with api_app(database_url) as url, httpx.AsyncClient(timeout=30) as http:
        response = await _post(http, url, {"kind": "text_to_video", "params": T2V, **extra})
        assert (response.status_code, response.json().get("field")) == (422, field), \
            response.text
        assert await _jobs(http, url) == []


async def test_a_body_over_the_limit_is_413_while_it_is_read(database_url: str) -> None:
    async with api_app(database_url, api_max_bytes=4096) as url, \
            httpx.AsyncClient(timeout=30) as http:
        big = {"kind": "text_to_video", "params": {**T2V, "negative_prompt": "x" * 5000}}
        declared = await _post(http, url, big)
        assert (declared.status_code, declared.json()["field"]) == (413, "body")

        async def chunks() -> Any:  # no Content-Length: the limit holds while reading
            for _ in range(100):
                yield b" " * 1024
        streamed = await http.post(f"{url}/api/jobs", content=chunks(), headers=AUTH)
        assert streamed.status_code == 413, streamed.text

        # 100,000 labels: refused, whatever the limit (here by size, or else by count).
        many = await _post(http, url, {"kind": "text_to_video", "params": T2V,
                                       "labels": _labels(100_000)})
        assert many.status_code in (413, 422)
        assert await _jobs(http, url) == []
        fits = await _post(http, url, {"kind": "text_to_video", "params": T2V})
        assert fits.status_code == 201, fits.text


async def test_the_default_body_limit_is_one_mebibyte(database_url: str) -> None:
    async with api_app(database_url) as url, httpx.AsyncClient(timeout=30) as http:
        padding = "x" * (1024 * 1024)
        response = await _post(http, url, {"kind": "text_to_video",
                                           "params": {**T2V, "negative_prompt": padding}})
        assert response.status_code == 413


@pytest.mark.parametrize(("path", "query", "status", "field"), [
    ("/api/jobs", "kind=%00", 422, "kind"),
    ("/api/jobs", "cursor=job_%00", 422, "cursor"),
    ("/api/tasks", "job_id=job_%00", 422, "job_id"),
    ("/api/tasks", "handler=dl%00", 422, "handler"),
    ("/api/jobs/job_%00", "", 404, None),
    ("/api/jobs/%00", "", 404, None),
])
async def test_nul_in_a_filter_cursor_or_id_is_a_4xx(database_url: str, path: str, query: str,
                                                     status: int, field: str | None) -> None:
    async with api_app(database_url) as url, httpx.AsyncClient(timeout=30) as http:
        await _post(http, url, {"kind": "text_to_video", "params": T2V})
        response = await http.get(f"{url}{path}" + (f"?{query}" if query else ""),
                                  headers=AUTH)
        assert response.status_code == status, response.text
        assert response.json().get("field") == field
        assert len(await _jobs(http, url)) == 1


async def test_jobs_stored_before_the_rules_still_list(tmp_path: Any) -> None:
    """Old releases committed a lone surrogate (SQLite keeps it; PostgreSQL never did) and
    every later listing failed: such a job is now served with a JSON escape."""
    db = tmp_path / "pixhook.db"
    async with SQLiteStore(db) as store:
        job = await store.create_job(kind="text_to_video", params={**T2V, "seed": 1},
                                     labels={"team": "\ud83d abc"})
    async with api_app(f"sqlite:///{db}") as url, httpx.AsyncClient(timeout=30) as http:
        [listed] = await _jobs(http, url)
        assert listed["labels"] == {"team": "\ud83d abc"}
        one = await http.get(f"{url}/api/jobs/{job.id}", headers=AUTH)
        assert one.status_code == 200 and one.json()["labels"] == {"team": "\ud83d abc"}
