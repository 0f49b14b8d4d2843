"""PixVerse's documented vocabularies: models, qualities, durations, ratios, statuses.

Source: ``shared/pixverse-api/REFERENCE.md`` sections 4 and 6. Client-side validation and the
simulator both read these tables, so a vocabulary change is made here once.
"""

from __future__ import annotations

import enum
from typing import Final

API_BASE_URL: Final = "https://app-api.pixverse.ai/openapi/v2"

MODELS: Final = ("v3.5", "v4", "v4.5", "v5", "v5.5", "v5.6", "v6", "c1")
LEGACY_MODELS: Final = frozenset({"v3.5", "v4", "v4.5", "v5"})
#: Models billed and validated per second, with any integer duration from 1 to 15 s.
PER_SECOND_MODELS: Final = frozenset({"v6", "c1"})

QUALITIES: Final = ("360p", "540p", "720p", "1080p")
#: Editing endpoints (swap, modify, mimic) stop at 720p.
EDIT_QUALITIES: Final = ("360p", "540p", "720p")

LEGACY_ASPECT_RATIOS: Final = ("16:9", "4:3", "1:1", "3:4", "9:16")
WIDE_ASPECT_RATIOS: Final = LEGACY_ASPECT_RATIOS + ("2:3", "3:2", "21:9")

MOTION_MODES: Final = ("normal", "fast")
STYLES: Final = ("anime", "3d_animation", "clay", "comic", "cyberpunk")
CAMERA_MOVEMENTS: Final = (
    "default", "horizontal_left", "horizontal_right", "vertical_up", "vertical_down",
    "zoom_in", "zoom_out", "crane_up", "quickly_zoom_in", "quickly_zoom_out",
    "smooth_zoom_in", "camera_rotation", "robo_arm", "super_dolly_out", "whip_pan",
    "hitchcock", "left_follow", "right_follow", "pan_left", "pan_right", "fix_bg",
)
FUSION_REFERENCE_TYPES: Final = ("subject", "background")

FUSION_MODELS: Final = ("v4.5", "v5", "v5.5", "v5.6", "v6", "c1")
EXTEND_MODELS: Final = ("v3.5", "v4", "v4.5", "v5", "v5.5", "v6")
MULTI_TRANSITION_MODELS: Final = ("v3.5", "v4", "v4.5", "v5")
CAMERA_MOVEMENT_MODELS: Final = frozenset({"v4", "v4.5"})
AUDIO_SWITCH_MODELS: Final = frozenset({"v5.5", "v5.6", "v6", "c1"})
MULTI_CLIP_MODELS: Final = frozenset({"v5.5", "v6"})

SEED_MAX: Final = 2_147_483_647
LONG_PROMPT_CHARS: Final = 5000  # text-to-video, fusion, restyle, modify (newer spec)
SHORT_PROMPT_CHARS: Final = 2048  # everything else, and every negative prompt

IMAGE_MIME_TYPES: Final = frozenset({"image/jpeg", "image/jpg", "image/png", "image/webp"})
VIDEO_MIME_TYPES: Final = frozenset({"video/mp4", "video/mov", "video/webm", "video/quicktime"})
AUDIO_MIME_TYPES: Final = frozenset({
    "audio/mpeg", "audio/wav", "audio/vnd.wave", "audio/x-wav", "audio/wave",
    "audio/x-m4a", "audio/aac", "audio/x-aac", "audio/mp4",
})
IMAGE_MAX_BYTES: Final = 20 * 1024 * 1024
MEDIA_MAX_BYTES: Final = 50 * 1024 * 1024


def allowed_durations(model: str, quality: str) -> tuple[int, ...]:
    """Durations (seconds) a model accepts at a quality, per REFERENCE.md section 4.1."""
    if model in PER_SECOND_MODELS:
        return tuple(range(1, 16))
    if model in LEGACY_MODELS:
        return (5,) if quality == "1080p" else (5, 8)
    # v5.5 and v5.6: 5, 8 and 10 s, but no 10 s at 1080p.
    return (5, 8) if quality == "1080p" else (5, 8, 10)


def aspect_ratios_for(model: str) -> tuple[str, ...]:
    return WIDE_ASPECT_RATIOS if model in PER_SECOND_MODELS else LEGACY_ASPECT_RATIOS


def max_fusion_references(model: str) -> int:
    return 3 if model in ("v4.5", "v5") else 7


def quality_pixels(quality: str) -> int:
    """``"720p"`` -> 720, the ``resolution_ratio`` PixVerse reports."""
    return int(quality.rstrip("p"))


class VideoStatus(enum.IntEnum):
    """PixVerse's status codes for a video (and, as far as known, an image) job."""

    SUCCEEDED = 1
    PENDING = 2  # seen only in the MCP client's mapping; treated as non-terminal
    IN_PROGRESS = 3  # likewise
    GENERATING = 5
    DELETED = 6
    MODERATION_FAILED = 7
    FAILED = 8

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: Final = frozenset({
    VideoStatus.SUCCEEDED, VideoStatus.DELETED, VideoStatus.MODERATION_FAILED, VideoStatus.FAILED,
})
