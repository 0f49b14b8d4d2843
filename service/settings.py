"""pixhook's settings, each declared once with its default and help.

Values come from, in order of precedence: environment variables, then ``pixhook.toml`` (in
the working directory, or the file named by ``PIXHOOK_CONFIG``) with keys in lower case
without the prefix (``database_url = "sqlite:///pixhook.db"``), then the defaults below.
The table drives validation, ``pixhook config`` and the README's list.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal

from service.exceptions import ServiceError

Source = Literal["env", "toml", "default"]


class SettingsError(ServiceError):
    """A setting has a value that cannot be used."""


@dataclasses.dataclass(frozen=True)
class Setting:
    env: str
    default: Any
    help: str
    cast: Callable[[str], Any] = str
    secret: bool = False

    @property
    def attr(self) -> str:
        """The attribute name on :class:`Settings` (``PIXHOOK_API_TOKEN`` -> ``api_token``)."""
        name = self.env.lower()
        return name.removeprefix("pixhook_")

    @property
    def toml_key(self) -> str:
        return self.attr


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError("must not be negative")
    return value


def _one_or_more(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("must be true or false")


def _names(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _forward_secret(text: str) -> str:
    if text and not text.startswith("whsec_"):
        raise ValueError("must be a Standard Webhooks secret: whsec_ followed by base64")
    return text


def _poll_mode(text: str) -> str:
    if text not in ("fallback", "always", "off"):
        raise ValueError("must be fallback, always or off")
    return text


def _log_level(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in ("debug", "info", "warning", "error", "critical"):
        raise ValueError("must be debug, info, warning, error or critical")
    return lowered


def _log_format(text: str) -> str:
    lowered = text.strip().lower()
    if lowered not in ("text", "json"):
        raise ValueError("must be text or json")
    return lowered


SETTINGS: Final[tuple[Setting, ...]] = (
    Setting("PIXHOOK_DATABASE_URL", "sqlite:///pixhook.db",
            "Where jobs are stored: sqlite:///relative.db, sqlite:////abs/path.db, or "
            "postgresql://user:password@host/db for several replicas "
            "(pip install 'pixhook[postgres]').", secret=True),
    Setting("PIXVERSE_BASE_URL", "https://app-api.pixverse.ai/openapi/v2",
            "PixVerse API base URL: one ending in /openapi/v2, or the host alone "
            "(https://app-api.pixverse.ai, as PixVerse's own client reads this variable); "
            "the simulator's is http://HOST:PORT."),
    Setting("PIXVERSE_API_KEY", "", "PixVerse API key (sent as the API-KEY header).",
            secret=True),
    Setting("PIXHOOK_PIXVERSE_STRICT", False,
            "Also refuse, before sending, what only weaker sources or older PixVerse docs "
            "forbid (motion_mode on v5+, extend without seed, v5 1080p 8 s...) and params "
            "pixhook does not know; off: refuse only what PixVerse's official docs forbid and "
            "send unknown params as given, with a warning.", _boolean),
    Setting("PIXVERSE_TIMEOUT", 30.0,
            "Seconds one PixVerse API call may take; a submission caught by a crash is retried "
            "after twice this.", _seconds),
    Setting("PIXVERSE_WEBHOOK_SECRET", "",
            "Secret Key PixVerse signs webhooks with; required to accept webhooks.", secret=True),
    Setting("PIXVERSE_WEBHOOK_SECRET_PREVIOUS", "",
            "The previous secret, still accepted while a rotation is under way.", secret=True),
    Setting("PIXHOOK_WEBHOOK_TOLERANCE", 300.0,
            "Seconds a webhook's timestamp may differ from now (replay window).", _seconds),
    Setting("PIXHOOK_WEBHOOK_MAX_BYTES", 65536,
            "Largest webhook body accepted; larger ones get 413.", _positive_int),
    Setting("PIXHOOK_BODY_TIMEOUT", 10.0,
            "Seconds a webhook or /api request body may take to arrive whole; slower ones "
            "get 408 and are closed (0 = no limit).", _seconds),
    Setting("PIXHOOK_API_TOKEN", "",
            "Bearer token for /api; empty refuses every /api call.", secret=True),
    Setting("PIXHOOK_API_MAX_BYTES", 1024 * 1024,
            "Largest /api request body accepted; larger ones get 413 (counted while reading).",
            _one_or_more),
    Setting("PIXHOOK_IDEMPOTENCY_TTL", 86400.0,
            "Seconds an Idempotency-Key of POST /api/jobs is kept: the same request with it "
            "replays the job it made; after this it counts as new.", _seconds),
    Setting("PIXHOOK_EVENTS_POLL_INTERVAL", 0.5,
            "Seconds between looks at the event log for each open GET /api/events stream "
            "(the log is shared by every replica).", _seconds),
    Setting("PIXHOOK_EVENTS_HEARTBEAT", 15.0,
            "Seconds of silence after which a GET /api/events stream sends a comment line, "
            "so proxies and clients know it is alive.", _seconds),
    Setting("PIXHOOK_MAX_IN_FLIGHT", 0,
            "Most jobs submitted to PixVerse and not finished at once (0 = no local limit).",
            _positive_int),
    Setting("PIXHOOK_SUBMIT_MAX_ATTEMPTS", 8,
            "Tries of one submission on ambiguous or unexpected failures (same trace id) "
            "before giving up.",
            _positive_int),
    Setting("PIXHOOK_POLL_MODE", "fallback",
            "fallback: poll only jobs whose webhook is overdue; always: poll every open job; "
            "off: never poll.", _poll_mode),
    Setting("PIXHOOK_WEBHOOK_GRACE", 300.0,
            "Seconds without news before a generating job is polled.", _seconds),
    Setting("PIXHOOK_POLL_DEADLINE", 6 * 3600.0,
            "Seconds after submission when an unfinished job is marked failed.", _seconds),
    Setting("PIXHOOK_RECONCILE_INTERVAL", 5.0,
            "Seconds between reconciler passes.", _seconds),
    Setting("PIXHOOK_RECONCILE_CONCURRENCY", 8,
            "Status calls one reconciler pass makes at once (a backlog of overdue jobs after a "
            "webhook outage clears this many times faster).", _one_or_more),
    Setting("PIXHOOK_URL", "http://127.0.0.1:8000",
            "Where the pixhook CLI finds the service (its /api), for submit, status, jobs..."),
    # -- handlers and their task queue ------------------------------------------------------
    Setting("PIXHOOK_HANDLERS", ("download", "slack", "followup", "forward"),
            "Handlers to run, by entry-point name, comma-separated (empty: none). Per-handler "
            "states, kinds and options: [handler.NAME] in pixhook.toml or "
            "PIXHOOK_HANDLER_NAME_OPTION.", _names),
    Setting("PIXHOOK_TASK_MAX_ATTEMPTS", 8,
            "Runs of one handler task before it is dead.", _positive_int),
    Setting("PIXHOOK_TASK_BACKOFF", 2.0,
            "Seconds before the first retry of a failed task; doubles per attempt, "
            "with jitter.", _seconds),
    Setting("PIXHOOK_TASK_BACKOFF_MAX", 600.0,
            "Longest wait between two runs of a failing task, in seconds.", _seconds),
    Setting("PIXHOOK_TASK_TIMEOUT", 900.0,
            "Seconds one handler run may take before it counts as failed.", _seconds),
    Setting("PIXHOOK_TASK_LEASE", 60.0,
            "Seconds a worker holds a task without renewing it; a crashed worker's tasks "
            "run again after this.", _seconds),
    Setting("PIXHOOK_TASK_CONCURRENCY", 64,
            "Handler tasks one worker runs at once, all handlers together; each handler also "
            "has its own limit, concurrency in [handler.NAME] or PIXHOOK_HANDLER_NAME_CONCURRENCY "
            "(default 16), and the others' tasks do not wait behind one at its limit.",
            _positive_int),
    Setting("PIXHOOK_MEDIA_DIR", "media",
            "Where the download handler stores videos (and GET /media/{token} serves them)."),
    Setting("PIXHOOK_DOWNLOAD_HOSTS", ("media.pixverse.ai", "*.pixverse.ai", "*.pixverseai.cn"),
            "Hosts the download handler may fetch from (*.example.com matches subdomains); "
            "the host of PIXVERSE_BASE_URL is always allowed.", _names),
    Setting("PIXHOOK_DOWNLOAD_ALLOW_PRIVATE", False,
            "Let the download handler fetch from private or loopback addresses "
            "(needed for the local simulator).", _boolean),
    Setting("PIXHOOK_DOWNLOAD_MAX_BYTES", 8 * 1024**3,
            "Largest video the download handler accepts, in bytes (0 = no limit).", _positive_int),
    Setting("PIXHOOK_SLACK_WEBHOOK_URL", "",
            "Slack incoming-webhook URL; empty turns the slack handler off.", secret=True),
    Setting("PIXHOOK_PUBLIC_URL", "",
            "pixhook's own base URL as others reach it (https://pixhook.example.com), used "
            "for signed media links; empty links to PixVerse's URL instead."),
    Setting("PIXHOOK_SECRET_KEY", "",
            "Signs media links and dashboard session cookies (a key derived per purpose); "
            "empty makes a random key per process, so links and dashboard logins die with it "
            "and logins do not work across replicas.", secret=True),
    Setting("PIXHOOK_TRUST_PROXY_HEADERS", False,
            "Believe X-Forwarded-Proto and X-Forwarded-For (the last address) from the "
            "connecting peer: set it only behind a reverse proxy that sets them; the "
            "dashboard's Secure cookie and login rate limit use them.", _boolean),
    Setting("PIXHOOK_MEDIA_LINK_TTL", 7 * 86400.0,
            "Seconds a signed media link stays valid.", _seconds),
    Setting("PIXHOOK_FORWARD_SECRET", "",
            "whsec_ secret the forward handler signs events to callback_url with "
            "(Standard Webhooks).", _forward_secret, secret=True),
    Setting("PIXHOOK_FORWARD_ALLOW_PRIVATE", False,
            "Let the forward handler POST to callback_urls on private or loopback addresses "
            "(receivers on your own network, local tests).", _boolean),
    Setting("PIXHOOK_OUTBOUND_TIMEOUT", 30.0,
            "Seconds one outgoing handler call (a forward, a Slack post, a download up to its "
            "headers) may take in all, however slowly the peer answers (0 = no limit).",
            _seconds),
    # -- operations -------------------------------------------------------------------------
    Setting("PIXHOOK_METRICS_TOKEN", "",
            "Bearer token GET /metrics wants; empty leaves /metrics open (keep it on the "
            "private network then).", secret=True),
    Setting("PIXHOOK_LOG_LEVEL", "info",
            "Least severe log level written: debug, info, warning, error or critical.",
            _log_level),
    Setting("PIXHOOK_LOG_FORMAT", "text",
            "text: one readable line per event; json: one JSON object per line (with job_id, "
            "task_id, action).", _log_format),
    Setting("PIXHOOK_ACCESS_LOG", False,
            "Log one line per HTTP request (uvicorn's access log, in pixhook's log format).",
            _boolean),
    Setting("PIXHOOK_ALERT_SLACK_URL", "",
            "Slack incoming-webhook URL alerts (and their recoveries) are posted to; empty: "
            "alerts are only logged, counted and shown on the dashboard.", secret=True),
    Setting("PIXHOOK_ALERT_CHECK_INTERVAL", 30.0,
            "Seconds between two looks at what alerts watch.", _seconds),
    Setting("PIXHOOK_ALERT_INTERVAL", 3600.0,
            "Seconds between two messages about one cause while it lasts.", _seconds),
    Setting("PIXHOOK_ALERT_CLEAR_AFTER", 600.0,
            "Seconds a cause must stay unseen before its alert clears (\"recovered\").",
            _seconds),
    Setting("PIXHOOK_ALERT_QUEUE_AGE", 300.0,
            "Seconds a due handler task may wait for a worker before an alert.", _seconds),
    Setting("PIXHOOK_ALERT_SUBMIT_STUCK", 600.0,
            "Seconds a job may stay in submitting before an alert.", _seconds),
    Setting("PIXHOOK_DEV", False,
            "Development mode: serve, web and worker start even without the API key, webhook "
            "secret or API token (each missing one is a warning, and /readyz says 503).",
            _boolean),
    Setting("PIXHOOK_WORKER_STALE_AFTER", 15.0,
            "Seconds without any worker's heartbeat before /readyz says 503; workers beat "
            "every third of this.", _seconds),
    Setting("PIXHOOK_RETENTION_DAYS", 30.0,
            "Days the history of a finished job (transitions, deliveries, tasks and their "
            "runs) is kept; the worker prunes older history in small batches (0 = keep).",
            _seconds),
    Setting("PIXHOOK_MEDIA_RETENTION_DAYS", 0.0,
            "Days a finished job's downloaded video is kept in PIXHOOK_MEDIA_DIR (0 = keep).",
            _seconds),
    Setting("PIXHOOK_RETENTION_INTERVAL", 3600.0,
            "Seconds between the worker's retention passes (0 = never; `pixhook prune` still "
            "works).", _seconds),
)

_BY_ATTR: Final = {s.attr: s for s in SETTINGS}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting's value; build with :meth:`load` (or directly in tests)."""

    database_url: str = "sqlite:///pixhook.db"
    pixverse_base_url: str = "https://app-api.pixverse.ai/openapi/v2"
    pixverse_api_key: str = dataclasses.field(default="", repr=False)
    pixverse_strict: bool = False
    pixverse_timeout: float = 30.0
    pixverse_webhook_secret: str = dataclasses.field(default="", repr=False)
    pixverse_webhook_secret_previous: str = dataclasses.field(default="", repr=False)
    webhook_tolerance: float = 300.0
    webhook_max_bytes: int = 65536
    body_timeout: float = 10.0
    api_token: str = dataclasses.field(default="", repr=False)
    api_max_bytes: int = 1024 * 1024
    idempotency_ttl: float = 86400.0
    events_poll_interval: float = 0.5
    events_heartbeat: float = 15.0
    max_in_flight: int = 0
    submit_max_attempts: int = 8
    poll_mode: str = "fallback"
    webhook_grace: float = 300.0
    poll_deadline: float = 6 * 3600.0
    reconcile_interval: float = 5.0
    reconcile_concurrency: int = 8
    url: str = "http://127.0.0.1:8000"
    handlers: tuple[str, ...] = ("download", "slack", "followup", "forward")
    task_max_attempts: int = 8
    task_backoff: float = 2.0
    task_backoff_max: float = 600.0
    task_timeout: float = 900.0
    task_lease: float = 60.0
    task_concurrency: int = 64
    media_dir: str = "media"
    download_hosts: tuple[str, ...] = ("media.pixverse.ai", "*.pixverse.ai", "*.pixverseai.cn")
    download_allow_private: bool = False
    download_max_bytes: int = 8 * 1024**3
    slack_webhook_url: str = dataclasses.field(default="", repr=False)
    public_url: str = ""
    secret_key: str = dataclasses.field(default="", repr=False)
    trust_proxy_headers: bool = False
    media_link_ttl: float = 7 * 86400.0
    forward_secret: str = dataclasses.field(default="", repr=False)
    forward_allow_private: bool = False
    outbound_timeout: float = 30.0
    metrics_token: str = dataclasses.field(default="", repr=False)
    log_level: str = "info"
    log_format: str = "text"
    access_log: bool = False
    alert_slack_url: str = dataclasses.field(default="", repr=False)
    alert_check_interval: float = 30.0
    alert_interval: float = 3600.0
    alert_clear_after: float = 600.0
    alert_queue_age: float = 300.0
    alert_submit_stuck: float = 600.0
    dev: bool = False
    worker_stale_after: float = 15.0
    retention_days: float = 30.0
    media_retention_days: float = 0.0
    retention_interval: float = 3600.0
    #: Per-handler configuration: ``{"slack": {"states": "succeeded,failed", ...}}``, from
    #: ``[handler.NAME]`` tables in pixhook.toml and ``PIXHOOK_HANDLER_NAME_OPTION`` variables.
    handler_options: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=dict, compare=False)
    #: Where each value came from, for ``pixhook config``.
    sources: Mapping[str, Source] = dataclasses.field(default_factory=dict, repr=False,
                                                      compare=False)

    @property
    def webhook_secrets(self) -> list[str]:
        """Secrets a webhook may be signed with, newest first."""
        return [s for s in (self.pixverse_webhook_secret,
                            self.pixverse_webhook_secret_previous) if s]

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None,
             toml_path: str | Path | None = None) -> Settings:
        env = os.environ if environ is None else environ
        path = Path(toml_path or env.get("PIXHOOK_CONFIG") or "pixhook.toml")
        file_values: dict[str, Any] = {}
        if path.is_file():
            try:
                file_values = tomllib.loads(path.read_text())
            except tomllib.TOMLDecodeError as exc:
                raise SettingsError(f"{path}: {exc}") from exc
        values: dict[str, Any] = {}
        sources: dict[str, Source] = {}
        for setting in SETTINGS:
            raw: Any
            if setting.env in env:
                raw, sources[setting.attr] = env[setting.env], "env"
            elif setting.toml_key in file_values:
                raw, sources[setting.attr] = file_values[setting.toml_key], "toml"
            else:
                sources[setting.attr] = "default"
                continue
            if isinstance(raw, list):  # handlers = ["download", "slack"] in TOML
                raw = ",".join(str(item) for item in raw)
            elif isinstance(raw, bool):
                raw = str(raw).lower()
            try:
                values[setting.attr] = setting.cast(str(raw))
            except ValueError as exc:
                raise SettingsError(f"{setting.env}={raw!r}: {exc}") from exc
        handler_tables = file_values.pop(HANDLER_TABLE, {})
        unknown = sorted(set(file_values) - set(_BY_ATTR))
        if unknown:
            raise SettingsError(f"{path}: unknown settings {', '.join(unknown)}")
        return cls(**values, sources=sources,
                   handler_options=_handler_options(handler_tables, env, path))

    def describe(self) -> list[dict[str, Any]]:
        """Every setting with its value (secrets masked), source and help."""
        rows = []
        for setting in SETTINGS:
            value = getattr(self, setting.attr)
            if setting.secret:
                value = mask(value)
            rows.append({"name": setting.env, "value": value, "help": setting.help,
                         "source": self.sources.get(setting.attr, "default")})
        return rows


#: The pixhook.toml table of per-handler options (``[handler.slack]``).
HANDLER_TABLE: Final = "handler"
#: Environment variables ``PIXHOOK_HANDLER_<NAME>_<OPTION>`` set one handler option.
HANDLER_ENV_PREFIX: Final = "PIXHOOK_HANDLER_"


def _handler_options(tables: Any, env: Mapping[str, str],
                     path: Path) -> dict[str, dict[str, Any]]:
    """Merge ``[handler.NAME]`` tables with ``PIXHOOK_HANDLER_NAME_OPTION`` variables (which
    win). Names are lower-cased; a handler name may not contain ``_`` in its variable form,
    so ``PIXHOOK_HANDLER_SLACK_STATES`` is handler ``slack``, option ``states``."""
    if not isinstance(tables, dict) or not all(isinstance(v, dict) for v in tables.values()):
        raise SettingsError(f"{path}: [{HANDLER_TABLE}.NAME] entries must be tables")
    options: dict[str, dict[str, Any]] = {name.lower(): dict(table)
                                          for name, table in tables.items()}
    for key, value in env.items():
        if key.startswith(HANDLER_ENV_PREFIX):
            name, _, option = key[len(HANDLER_ENV_PREFIX):].lower().partition("_")
            if not name or not option:
                raise SettingsError(f"{key}: expected {HANDLER_ENV_PREFIX}NAME_OPTION")
            options.setdefault(name, {})[option] = value
    return options


def mask(secret: str) -> str:
    """``"sk-abcdef123"`` -> ``"sk…23 (11 chars)"``; never enough to use."""
    if not secret:
        return ""
    if len(secret) < 8:
        return "*" * len(secret)
    return f"{secret[:2]}…{secret[-2:]} ({len(secret)} chars)"
