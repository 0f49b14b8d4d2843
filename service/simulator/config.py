"""Every knob of the PixVerse simulator, with its default and why.

Defaults model PixVerse as documented (REFERENCE.md). Chaos knobs are all off by default.
``SimulatorConfig.from_env()`` reads ``PIXVERSE_SIM_*`` variables; tests build the dataclass
directly.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, Final, Literal

#: PixVerse's documented webhook retry intervals (seconds) after a failed delivery.
PIXVERSE_RETRY_SCHEDULE_SECONDS: Final = (2.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0)
DEFAULT_API_KEY: Final = "sim-key"
DEFAULT_WEBHOOK_SECRET: Final = "sim-webhook-secret"


@dataclasses.dataclass
class Account:
    """One API key's balance and limits."""

    credit_monthly: int = 1_000_000
    credit_package: int = 0
    #: Simultaneous jobs in status 5 before 500044. The real numbers per plan are unknown.
    concurrency_limit: int = 5
    #: Where this key's webhooks go (PixVerse configures it per account in its dashboard).
    webhook_url: str | None = None
    webhook_secret: str = DEFAULT_WEBHOOK_SECRET


@dataclasses.dataclass
class ChaosConfig:
    """Fault injection; every rate is a probability in [0, 1], drawn from ``seed``."""

    seed: int | None = None
    #: Webhooks: never sent at all (the job still finishes; polling sees it).
    webhook_drop_rate: float = 0.0
    #: Webhooks: sent twice (two independent deliveries, each with its own nonce).
    webhook_duplicate_rate: float = 0.0
    #: Webhooks: extra delay before the first attempt, uniformly in [0, max] seconds.
    webhook_delay_max_seconds: float = 0.0
    #: Webhooks: held back and released in shuffled batches of this size (0 = off).
    webhook_reorder_window: int = 0
    #: Webhooks: longest a held delivery waits for its reorder batch to fill (real seconds, not
    #: compressed); a partial batch is then released shuffled, so a quiet period strands nothing.
    webhook_reorder_hold_seconds: float = 1.0
    #: Webhooks: the signature header is corrupted on this share of attempts.
    webhook_corrupt_signature_rate: float = 0.0
    #: API: answer with HTTP 500/502/503 and no envelope.
    api_5xx_rate: float = 0.0
    #: API: hang this long before answering (clients should time out first).
    api_timeout_rate: float = 0.0
    api_timeout_seconds: float = 30.0
    #: API: answer HTTP 429 with Retry-After.
    api_429_rate: float = 0.0
    api_retry_after_seconds: int = 1
    #: API chaos applies only to these paths' prefixes (empty = every /openapi/v2 route).
    api_chaos_paths: tuple[str, ...] = ()
    #: When API chaos strikes a POST, whether the job is created anyway (the ambiguous case:
    #: the client sees an error but PixVerse made the video).
    api_chaos_after_commit: bool = False


@dataclasses.dataclass
class SimulatorConfig:
    accounts: dict[str, Account] = dataclasses.field(
        default_factory=lambda: {DEFAULT_API_KEY: Account()}
    )
    #: Seconds a job stays in status 5 before reaching its terminal status.
    generation_seconds: float = 3.0
    #: Prompt words (case-insensitive) that end a job with status 7 (moderation failed).
    moderation_words: tuple[str, ...] = ("nsfw", "moderate-me")
    #: Prompt words that end a job with status 8 (generation failed).
    failure_words: tuple[str, ...] = ("fail-me",)
    #: Prompt words refused at submission with ErrCode 500063 (pre-submit moderation).
    blocked_words: tuple[str, ...] = ("blocked-word",)
    #: Seeded random outcome rates for jobs no rule decided.
    random_moderation_rate: float = 0.0
    random_failure_rate: float = 0.0
    outcome_seed: int | None = None
    #: Size in bytes of every result video; None serves the bundled real small MP4.
    video_size_bytes: int | None = None
    #: Webhook retry intervals, and the factor they are multiplied by (0.01 = 100x faster).
    webhook_retry_schedule: tuple[float, ...] = PIXVERSE_RETRY_SCHEDULE_SECONDS
    webhook_jitter: float = 0.10
    time_compression: float = 1.0
    #: Per-attempt HTTP timeout when delivering a webhook.
    webhook_timeout_seconds: float = 10.0
    #: Webhook sends in flight at once; the rest wait their turn (thousands may be due at once).
    webhook_max_concurrency: int = 32
    #: Accept ``ok`` surrounded by whitespace as success (PixVerse: exactly ``ok``).
    webhook_accept_stripped_ok: bool = False
    #: Also push ``status: 5`` once when a job starts (undocumented; off like PixVerse's docs).
    webhook_send_generating: bool = False
    #: Also push image-template results (PixVerse's webhook page lists video endpoints only).
    webhook_image_jobs: bool = False
    #: Flat fields merged into every webhook body, over the documented ones: a field PixVerse
    #: might add, a ``null``, or a whole float (``{"size": 10.0}``). Empty: the documented six.
    webhook_extra_fields: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: How ``null`` is spelled in the signed string (undocumented; "" or "null").
    webhook_sign_null_as: str = ""
    #: Sign whole floats as ``10.0`` rather than Go's ``10`` (undocumented either way).
    webhook_sign_point_on_whole: bool = False
    #: Send ``size`` in webhooks as a float in megabytes (``10.5``, as the doc's own example),
    #: not as integer bytes: the float path of the signature, end to end (the unit is unknown).
    webhook_size_float: bool = False
    #: Send a job's webhooks to the ``callback_url`` field of its generate request, when it
    #: has one, instead of the account's URL. No PixVerse source has such a field (its webhook
    #: URL is not set per request, as far as anyone knows): a test convenience only.
    honour_request_callback_url: bool = False
    #: Apply PixVerse's older, stricter rules too (REFERENCE.md §14; see
    #: :mod:`service.pixverse.validation`); off, only what an official source forbids is
    #: refused, as PixVerse's own client shows PixVerse accepts more.
    strict_validation: bool = False
    #: Echo ``credits`` on every create answer, not only where the docs show it (ComfyUI
    #: models it as optional everywhere; clients must not require it either way).
    credits_on_every_create: bool = False
    #: Whether the quality names the output's short edge (540p 16:9 -> 960x540, 1:1 ->
    #: 540x540) or its long edge (540p 16:9 -> 1024x576, 1:1 -> 1024x1024; ComfyUI's V6 node
    #: maps 540p to 1024 px and 720p to 1280 px). PixVerse does not say.
    quality_edge: Literal["short", "long"] = "short"
    #: Refund the price when a job ends in 7 or 8 (semi-official: the usage API has refunds).
    refund_failed_jobs: bool = True
    #: Serve upload moderation rejects as HTTP 500 with lower-case keys, as one official
    #: example shows (the lower-case envelope variant).
    lowercase_upload_errors: bool = True
    chaos: ChaosConfig = dataclasses.field(default_factory=ChaosConfig)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SimulatorConfig:
        """Read ``PIXVERSE_SIM_*``: API_KEY, CREDITS, CONCURRENCY, WEBHOOK_URL, WEBHOOK_SECRET,
        GENERATION_SECONDS, TIME_COMPRESSION, VIDEO_SIZE_BYTES, the switches STRICT_VALIDATION,
        WEBHOOK_SIZE_FLOAT, CREDITS_ON_EVERY_CREATE, HONOUR_REQUEST_CALLBACK_URL, QUALITY_EDGE
        (short or long), and ``CHAOS_<FIELD>`` for each :class:`ChaosConfig` field (for example
        ``PIXVERSE_SIM_CHAOS_WEBHOOK_DROP_RATE=0.2``)."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return env.get(f"PIXVERSE_SIM_{name}")

        account = Account(
            credit_monthly=int(get("CREDITS") or Account.credit_monthly),
            concurrency_limit=int(get("CONCURRENCY") or Account.concurrency_limit),
            webhook_url=get("WEBHOOK_URL") or None,
            webhook_secret=get("WEBHOOK_SECRET") or DEFAULT_WEBHOOK_SECRET,
        )
        config = cls(accounts={get("API_KEY") or DEFAULT_API_KEY: account})
        if (value := get("GENERATION_SECONDS")) is not None:
            config.generation_seconds = float(value)
        if (value := get("TIME_COMPRESSION")) is not None:
            config.time_compression = float(value)
        if (value := get("VIDEO_SIZE_BYTES")) is not None:
            config.video_size_bytes = int(value)
        for switch in ("strict_validation", "webhook_size_float", "credits_on_every_create",
                       "honour_request_callback_url"):
            if (value := get(switch.upper())) is not None:
                setattr(config, switch, _cast("bool", value))
        if (value := get("QUALITY_EDGE")) is not None:
            if value not in ("short", "long"):
                raise ValueError(f"PIXVERSE_SIM_QUALITY_EDGE={value!r}: must be short or long")
            config.quality_edge = "long" if value == "long" else "short"
        for field in dataclasses.fields(ChaosConfig):
            value = get(f"CHAOS_{field.name.upper()}")
            if value is not None:
                setattr(config.chaos, field.name, _cast(field.type, value))
        return config


def _cast(annotation: Any, value: str) -> Any:
    text = str(annotation)
    if "bool" in text:
        return value.strip().lower() in ("1", "true", "yes", "on")
    if "tuple" in text:
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if "int" in text and "float" not in text:
        return int(value)
    return float(value)
