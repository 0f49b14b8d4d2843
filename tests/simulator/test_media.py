"""Result media: the real sample MP4, generated sizes, Range requests, blobs."""

from __future__ import annotations

import hashlib
import struct

import pytest

from service.simulator import media
from tests.simulator.helpers import Sim, SimFactory, shared_sim, sim, sim_factory

__all__ = ["shared_sim", "sim", "sim_factory"]  # fixtures

FIVE_MB = 5 * 1024 * 1024 + 123  # not a multiple of the block or chunk size


def expected(seed: int, start: int, end: int) -> bytes:
    return b"".join(media.iter_pattern(seed, start, end))


def test_a_normal_job_serves_a_real_mp4(sim: Sim) -> None:
    video_id = sim.text_video()
    sim.wait_job(video_id)
    record = sim.result(video_id)
    response = sim.client.get(record["url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "video/mp4"
    body = response.content
    box_size, box_type = struct.unpack(">I4s", body[:8])
    assert box_type == b"ftyp" and 8 <= box_size < 64
    assert b"moov" in body and b"mdat" in body
    assert len(body) == record["size"] == media.SAMPLE_MP4.stat().st_size < 100_000
    ranged = sim.client.get(record["url"], headers={"Range": "bytes=4-7"})
    assert ranged.status_code == 206 and ranged.content == b"ftyp"


def test_media_of_an_unfinished_or_unknown_job_is_404(sim: Sim) -> None:
    video_id = sim.text_video()
    assert sim.client.get(f"/media/videos/{video_id}.mp4").status_code == 404
    assert sim.client.get("/media/videos/123.mp4").status_code == 404
    assert sim.client.get("/media/videos/abc.mp4").status_code == 404


def test_configured_size_streams_deterministic_bytes(sim_factory: SimFactory) -> None:
    sim = sim_factory(video_size_bytes=FIVE_MB)
    video_id = sim.text_video()
    sim.wait_job(video_id)
    record = sim.result(video_id)
    assert record["size"] == FIVE_MB
    assert sim.wait_published(video_id)[0]["size"] == FIVE_MB
    digests = []
    for _ in range(2):
        with sim.client.stream("GET", record["url"]) as response:
            assert response.status_code == 200
            assert int(response.headers["content-length"]) == FIVE_MB
            digest, total, chunks = hashlib.sha256(), 0, 0
            for chunk in response.iter_bytes():
                digest.update(chunk)
                total += len(chunk)
                chunks += 1
        assert total == FIVE_MB and chunks > 1
        digests.append(digest.hexdigest())
    assert digests[0] == digests[1]
    assert digests[0] == hashlib.sha256(expected(video_id, 0, FIVE_MB)).hexdigest()
    # Another video of the same size has other bytes.
    other = sim.text_video()
    sim.wait_job(other)
    head = sim.client.get(f"/media/videos/{other}.mp4", headers={"Range": "bytes=0-63"})
    assert head.content != expected(video_id, 0, 64)
    assert head.content == expected(other, 0, 64)


def test_range_requests_on_generated_media(sim_factory: SimFactory) -> None:
    sim = sim_factory(video_size_bytes=FIVE_MB)
    video_id = sim.text_video()
    sim.wait_job(video_id)
    url = f"/media/videos/{video_id}.mp4"
    middle = sim.client.get(url, headers={"Range": "bytes=4000-70000"})
    assert middle.status_code == 206
    assert middle.headers["content-range"] == f"bytes 4000-70000/{FIVE_MB}"
    assert middle.content == expected(video_id, 4000, 70001)
    tail = sim.client.get(url, headers={"Range": "bytes=-10"})
    assert tail.content == expected(video_id, FIVE_MB - 10, FIVE_MB)
    open_ended = sim.client.get(url, headers={"Range": f"bytes={FIVE_MB - 5}-"})
    assert len(open_ended.content) == 5
    outside = sim.client.get(url, headers={"Range": f"bytes={FIVE_MB}-"})
    assert outside.status_code == 416
    assert outside.headers["content-range"] == f"bytes */{FIVE_MB}"


def test_a_forced_size_overrides_the_sample(sim_factory: SimFactory) -> None:
    sim = sim_factory(generation_seconds=60)
    video_id = sim.text_video()
    sim.client.post(f"/_sim/jobs/{video_id}/outcome", json={"status": 1, "size_bytes": 70_000})
    response = sim.client.get(sim.result(video_id)["url"])
    assert len(response.content) == 70_000
    assert response.content == expected(video_id, 0, 70_000)


def test_blobs_of_any_size(sim: Sim) -> None:
    for size in (0, 1, 4096, 65537):
        response = sim.client.get(f"/media/blob/{size}")
        assert response.status_code == 200
        assert response.content == expected(0, 0, size)
    assert sim.client.get("/media/blob/-1").status_code in (400, 404)
    ranged = sim.client.get("/media/blob/100", headers={"Range": "bytes=90-"})
    assert ranged.status_code == 206 and ranged.content == expected(0, 90, 100)


@pytest.mark.parametrize(("header", "size", "wanted"), [
    (None, 10, None),
    ("bytes=0-", 10, (0, 10)),
    ("bytes=2-4", 10, (2, 5)),
    ("bytes=5-100", 10, (5, 10)),
    ("bytes=-3", 10, (7, 10)),
    ("bytes=-30", 10, (0, 10)),
])
def test_parse_range(header: str | None, size: int, wanted: tuple[int, int] | None) -> None:
    assert media.parse_range(header, size) == wanted


@pytest.mark.parametrize("header", ["bytes=10-", "bytes=5-2", "bytes=-", "items=1-2",
                                    "bytes=1-2,4-5"])
def test_parse_range_refuses(header: str) -> None:
    assert isinstance(media.parse_range(header, 10), Exception)


def test_generated_chunks_are_bounded() -> None:
    chunks = list(media.iter_pattern(7, 100, 1_000_000))
    assert max(len(c) for c in chunks) <= media.CHUNK_BYTES
    assert sum(len(c) for c in chunks) == 1_000_000 - 100
    block = media.pattern_block(7)
    assert b"".join(chunks)[:10] == block[100:110]
