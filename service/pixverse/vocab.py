"""PixVerse's documented vocabularies: models, qualities, durations, ratios, statuses.

Source: ``shared/pixverse-api/REFERENCE.md`` sections 4, 6 and 14 (§14 overrides the others).
Client-side validation and the simulator both read these tables, so a vocabulary change is
made here once. Each table says which source it rests on; :mod:`service.pixverse.validation`
says which of them are enforced by default and which only in strict mode.
"""

from __future__ import annotations

import enum
from typing import Final

API_HOST: Final = "https://app-api.pixverse.ai"
#: Every path is under this prefix [official]; PixVerse's own client takes the host alone and
#: appends it itself (§14), so a base URL without a path gets it appended.
API_PATH_PREFIX: Final = "/openapi/v2"
API_BASE_URL: Final = API_HOST + API_PATH_PREFIX

MODELS: Final = ("v3.5", "v4", "v4.5", "v5", "v5.5", "v5.6", "v6", "c1")
LEGACY_MODELS: Final = frozenset({"v3.5", "v4", "v4.5", "v5"})
#: Models billed and validated per second, with any integer duration from 1 to 15 s.
PER_SECOND_MODELS: Final = frozenset({"v6", "c1"})

QUALITIES: Final = ("360p", "540p", "720p", "1080p")
#: Editing endpoints (swap, modify, mimic) stop at 720p.
EDIT_QUALITIES: Final = ("360p", "540p", "720p")

LEGACY_ASPECT_RATIOS: Final = ("16:9", "4:3", "1:1", "3:4", "9:16")
WIDE_ASPECT_RATIOS: Final = LEGACY_ASPECT_RATIOS + ("2:3", "3:2", "21:9")

MOTION_MODES: Final = ("normal", "fast")  # [official]
#: ``fast`` only on these (unsupported from v5 up) [official]; ``normal`` goes with every model
#: (PixVerse's own client sends it with v5, §14). Strict mode keeps the older rule that no
#: ``motion_mode`` at all goes with v5 and later.
FAST_MOTION_MODELS: Final = ("v3.5", "v4", "v4.5")
STYLES: Final = ("anime", "3d_animation", "clay", "comic", "cyberpunk")  # [official]
#: Styles in PixVerse's own client and ComfyUI's V6 list, not in the official one (§14).
EXTRA_STYLES: Final = ("realistic",)
CAMERA_MOVEMENTS: Final = (
    "default", "horizontal_left", "horizontal_right", "vertical_up", "vertical_down",
    "zoom_in", "zoom_out", "crane_up", "quickly_zoom_in", "quickly_zoom_out",
    "smooth_zoom_in", "camera_rotation", "robo_arm", "super_dolly_out", "whip_pan",
    "hitchcock", "left_follow", "right_follow", "pan_left", "pan_right", "fix_bg",
)
FUSION_REFERENCE_TYPES: Final = ("subject", "background")
#: Fusion's V6 "omni" mode [third-party, maintained: ComfyUI; experimental]: video references,
#: ``duration: 0`` and ``aspect_ratio: "auto"`` allowed, up to 10 references.
OMNI_REFERENCE_MODE: Final = "omni"
OMNI_MAX_REFERENCES: Final = 10

FUSION_MODELS: Final = ("v4.5", "v5", "v5.5", "v5.6", "v6", "c1")
EXTEND_MODELS: Final = ("v3.5", "v4", "v4.5", "v5", "v5.5", "v6")
MULTI_TRANSITION_MODELS: Final = ("v3.5", "v4", "v4.5", "v5")
CAMERA_MOVEMENT_MODELS: Final = frozenset({"v4", "v4.5"})
AUDIO_SWITCH_MODELS: Final = frozenset({"v5.5", "v5.6", "v6", "c1"})
MULTI_CLIP_MODELS: Final = frozenset({"v5.5", "v6"})

SEED_MAX: Final = 2_147_483_647
#: Prompts up to 5000 characters everywhere (§14: the newer spec says 5000 for text, fusion,
#: restyle and modify; the V6 table says 2048 for image, transition and extend, ComfyUI 5000).
LONG_PROMPT_CHARS: Final = 5000
#: Negative prompts [official], and in strict mode prompts of image, transition and extend.
SHORT_PROMPT_CHARS: Final = 2048

#: Output size when quality names the **long** edge (ComfyUI's V6 node maps 540p to 1024 px
#: and 720p to 1280 px [third-party]; 360p and 1080p are the 16:9 values). Which edge PixVerse
#: means is unknown, so the simulator makes it a knob.
LONG_EDGE_PIXELS: Final = {"360p": 640, "540p": 1024, "720p": 1280, "1080p": 1920}

# -- the experimental endpoints (one source each: the semi-official kit, §14) ----------------
MUSIC_MV_AGENT_TYPES: Final = ("vibe_mv", "vibe_mv_v3_custom")
MUSIC_MV_ASPECT_RATIOS: Final = ("16:9", "9:16", "1:1", "4:3", "3:4")
MUSIC_MV_QUALITIES: Final = ("720p", "1080p")
TTS_SPEAKER_TYPES: Final = ("system", "custom", "all")
USAGE_CREDITS_STATUSES: Final = ("consume", "refund")
USAGE_CREATION_TYPES: Final = (
    "text_to_video", "image_to_video", "transition", "lip_sync", "extend", "sound_effect",
    "fusion", "restyle", "multi_transition", "swap", "agent", "swap_mask", "avatar",
    "image_to_image", "mimic", "modify", "upscale",
)
#: ``YYYY-MM-DD HH:mm:ss``, UTC; a range of at most 30 days.
USAGE_TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
USAGE_MAX_DAYS: Final = 30

IMAGE_MIME_TYPES: Final = frozenset({"image/jpeg", "image/jpg", "image/png", "image/webp"})
VIDEO_MIME_TYPES: Final = frozenset({"video/mp4", "video/mov", "video/webm", "video/quicktime"})
AUDIO_MIME_TYPES: Final = frozenset({
    "audio/mpeg", "audio/wav", "audio/vnd.wave", "audio/x-wav", "audio/wave",
    "audio/x-m4a", "audio/aac", "audio/x-aac", "audio/mp4",
})
IMAGE_MAX_BYTES: Final = 20 * 1024 * 1024
MEDIA_MAX_BYTES: Final = 50 * 1024 * 1024


def allowed_durations(model: str, quality: str, *, strict: bool = False) -> tuple[int, ...]:
    """Durations (seconds) a model accepts at a quality, per REFERENCE.md section 4.1 [official].

    v5 at 1080p for 8 s is accepted: the official pricing page lists it, while PixVerse's own
    client says 1080p is 5 s only (§14: sources disagree, PixVerse decides); ``strict`` refuses
    it as before.
    """
    if model in PER_SECOND_MODELS:
        return tuple(range(1, 16))
    if model in LEGACY_MODELS:
        if quality == "1080p":
            return (5, 8) if model == "v5" and not strict else (5,)
        return (5, 8)
    # v5.5 and v5.6: 5, 8 and 10 s, but no 10 s at 1080p.
    return (5, 8) if quality == "1080p" else (5, 8, 10)


def aspect_ratios_for(model: str) -> tuple[str, ...]:
    return WIDE_ASPECT_RATIOS if model in PER_SECOND_MODELS else LEGACY_ASPECT_RATIOS


def max_fusion_references(model: str) -> int:
    return 3 if model in ("v4.5", "v5") else 7


def quality_pixels(quality: str) -> int:
    """``"720p"`` -> 720, the ``resolution_ratio`` PixVerse reports (0 if not of that form)."""
    digits = quality.removesuffix("p")
    return int(digits) if digits.isdigit() else 0


#: PixVerse's ids are positive signed 64-bit integers (pixhook keeps them as BIGINT).
MAX_ID: Final = 2**63 - 1


def id_digits(raw: object) -> str:
    """``raw`` (a string or an int) as the digits of a PixVerse id, or ``""``. isascii:
    str.isdigit() also takes other scripts' digits ('³'), which int() refuses; at most 19
    digits: int() refuses thousands."""
    text = str(raw) if isinstance(raw, (str, int)) and not isinstance(raw, bool) else ""
    return text if text.isascii() and text.isdigit() and len(text) <= 19 else ""


def video_id(raw: object) -> int | None:
    """``raw`` (a string or an int) as a PixVerse video id, or ``None`` if it cannot be one."""
    text = id_digits(raw)
    return int(text) if text and 0 < int(text) <= MAX_ID else None


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
