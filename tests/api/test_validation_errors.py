"""A request with several fields PixVerse's rules refuse is answered with all of them at once,
and nothing is committed."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.api.support import AUTH, api_app


async def test_every_bad_field_is_listed_and_nothing_is_kept(tmp_path: Path) -> None:
    async with api_app(f"sqlite:///{tmp_path / 'pixhook.db'}") as url, \
            httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(f"{url}/api/jobs", headers=AUTH, json={
            "kind": "text_to_video", "params": {
                "prompt": "a lantern", "model": "v6", "duration": 5, "quality": "999p",
                "aspect_ratio": "7:5"}})
        assert answer.status_code == 422, answer.text
        body = answer.json()
        fields = [problem["field"] for problem in body["errors"]]
        assert {"params.quality", "params.aspect_ratio"} <= set(fields), body
        assert body["field"] == fields[0]
        assert all(problem["error"] for problem in body["errors"])
        listed = await http.get(f"{url}/api/jobs", headers=AUTH)
        assert listed.json()["jobs"] == []
