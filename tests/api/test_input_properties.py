"""Property-based tests of ``/api`` (Hypothesis), on SQLite and PostgreSQL: whatever JSON or
bytes arrive (lone surrogates, NUL, deep nesting, huge numbers, big strings) and whatever
query or id is asked for, the answer is never a 5xx, and every job committed can still be
listed and fetched.

One app (uvicorn in a background thread, web role only) serves every example of a backend.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.app import create_app
from service.pixverse.models import REQUEST_TYPES
from tests.api.support import AUTH, T2V, api_settings
from tests.support.servers import serve

#: What breaks storage or encoding (NUL, lone surrogates), mixed into ordinary text often
#: enough to matter: uniform code points would almost never hit the 2,048 surrogates.
ODD = ["\x00", "\ud83d", "\ude00", "\udfff", "\x7f", "\u2028", "é", "😀", "\\", '"', " "]
any_text = st.text(st.one_of(st.sampled_from(ODD),
                             st.characters(codec=None, exclude_categories=())), max_size=30)
#: Text with at least one of ODD in it.
odd_text = st.builds(lambda a, odd, b: a + odd + b, any_text, st.sampled_from(ODD), any_text)
big_text = st.builds(lambda c, n: c * n, st.sampled_from(["x", "é", "\ud83d", "\x00"]),
                     st.integers(1000, 20000))
numbers = st.one_of(st.integers(), st.integers(-10**400, 10**400),
                    st.floats(allow_nan=False, allow_infinity=False))
scalars = st.one_of(st.none(), st.booleans(), numbers, any_text)
json_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(any_text, inner, max_size=4)), max_leaves=12)

#: Stands for deep nesting in a body, which json.dumps could not write itself.
DEEP = "<deep>"
#: What a valid job may have changed: each a way past one of the API's rules.
CHANGES = ["prompt", "negative_prompt", "seed", "param", "deep", "kind", "labels",
           "callback_url", "then", "big", "other"]


@st.composite
def job_bodies(draw: st.DrawFn) -> bytes:
    """Mostly a valid job with one to three things changed; sometimes anything at all."""
    shape = draw(st.sampled_from(["job", "job", "job", "job", "json", "bytes", "numbers"]))
    if shape == "bytes":
        return draw(st.binary(max_size=200))
    if shape == "numbers":  # what json.dumps cannot write: overflows, NaN, 5,000 digits
        return draw(st.sampled_from([
            b'{"kind": "text_to_video", "params": {"seed": 1e999}}', b'{"params": NaN}',
            b'{"kind": "text_to_video", "params": {"seed": ' + b"9" * 5000 + b"}}",
            b'{"kind": "text_to_video", "params": {"seed": -Infinity}}']))
    if shape == "json":
        return json.dumps(draw(json_values)).encode()
    params: dict[str, Any] = dict(T2V)
    body: dict[str, Any] = {"kind": "text_to_video", "params": params}
    depth = 0
    for change in draw(st.lists(st.sampled_from(CHANGES), min_size=1, max_size=3,
                                unique=True)):
        if change in ("prompt", "negative_prompt"):
            params[change] = draw(odd_text)
        elif change == "seed":
            params["seed"] = draw(numbers)
        elif change == "param":
            params[draw(odd_text)] = draw(json_values)
        elif change == "deep":
            params["extra"], depth = DEEP, draw(st.integers(1, 1200))
        elif change == "kind":
            body["kind"] = draw(st.one_of(st.sampled_from(sorted(REQUEST_TYPES)), any_text))
        elif change == "labels":
            body["labels"] = draw(st.dictionaries(st.one_of(odd_text, any_text), odd_text,
                                                  min_size=1, max_size=5))
        elif change == "callback_url":
            body["callback_url"] = "https://hooks.example.com/" + draw(odd_text)
        elif change == "then":
            body["then"] = draw(json_values)
        elif change == "big":
            params["negative_prompt"] = draw(big_text)
        else:
            body[draw(any_text)] = draw(json_values)
    # ensure_ascii: a lone surrogate travels as its JSON escape, as a client would send it.
    text = json.dumps(body, ensure_ascii=True)
    return text.replace(json.dumps(DEEP), "[" * depth + "1" + "]" * depth, 1).encode()


def _quoted(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


@pytest.fixture
def client(database_url: str) -> Iterator[httpx.Client]:
    app = create_app(api_settings(database_url), run_background=False)
    with serve(app) as url, httpx.Client(base_url=url, headers=AUTH, timeout=30) as http:
        yield http


def _all_jobs_still_serve(client: httpx.Client) -> None:
    listed = client.get("/api/jobs", params={"limit": 200})
    assert listed.status_code == 200, listed.text
    for job in listed.json()["jobs"]:
        one = client.get(f"/api/jobs/{_quoted(job['id'])}")
        assert one.status_code == 200, one.text


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(body=job_bodies(), key=st.one_of(st.none(), st.text(
    st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=8)))
def test_post_never_5xx_and_what_it_commits_serves(client: httpx.Client, body: bytes,
                                                    key: str | None) -> None:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = key
    response = client.post("/api/jobs", content=body, headers=headers)
    assert response.status_code < 500, (response.status_code, response.text, body[:300])
    assert response.status_code in (201, 413, 422), response.status_code
    if response.status_code == 201:
        one = client.get(f"/api/jobs/{_quoted(response.json()['id'])}")
        assert one.status_code == 200, one.text
        _all_jobs_still_serve(client)


@settings(max_examples=100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=st.sampled_from(["/api/jobs", "/api/tasks"]),
       query=st.dictionaries(st.sampled_from(["state", "kind", "cursor", "limit", "job_id",
                                              "handler"]), any_text, max_size=3),
       # "/" would be a path segment, not an id (a trailing one redirects).
       job_id=any_text.map(lambda text: "job_" + text.replace("/", "_")))
def test_reads_never_5xx(client: httpx.Client, path: str, query: dict[str, str],
                         job_id: str) -> None:
    search = "&".join(f"{name}={_quoted(value)}" for name, value in query.items())
    listed = client.get(f"{path}?{search}")
    assert listed.status_code in (200, 422), (listed.status_code, listed.text, query)
    for item in ("/api/jobs/", "/api/tasks/"):
        one = client.get(item + _quoted(job_id))
        assert one.status_code == 404, (one.status_code, one.text, job_id)
    _all_jobs_still_serve(client)
