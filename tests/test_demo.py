"""``pixhook demo`` (the README's first command) runs to its summary on the real service."""

from __future__ import annotations

from pathlib import Path

from service.demo import run_demo


async def test_the_demo_runs_to_its_summary(tmp_path: Path) -> None:
    lines: list[str] = []
    code = await run_demo(media_dir=str(tmp_path / "media"), echo=lines.append)
    output = "\n".join(lines)
    assert code == 0, output
    assert "jobs               5: 1 moderation_failed, 4 succeeded" in output
    assert "files downloaded   4" in output and "slack messages     5" in output
    # A chat sink beyond Slack: the Discord stand-in answered its first post 429, then took
    # one message per finished job, the videos attached.
    assert ("discord messages   5 (4 with the MP4 attached; 1 answered 429 and retried)"
            in output)
    assert "status polls made  0 (webhooks only)" in output
    assert "over GET /api/events, in order, once each" in output
    assert len(list((tmp_path / "media").glob("*.mp4"))) == 4
