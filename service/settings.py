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


def _poll_mode(text: str) -> str:
    if text not in ("fallback", "always", "off"):
        raise ValueError("must be fallback, always or off")
    return text


SETTINGS: Final[tuple[Setting, ...]] = (
    Setting("PIXHOOK_DATABASE_URL", "sqlite:///pixhook.db",
            "Where jobs are stored: sqlite:///relative.db, sqlite:////abs/path.db "
            "(PostgreSQL arrives with the scale-out issue)."),
    Setting("PIXVERSE_BASE_URL", "https://app-api.pixverse.ai/openapi/v2",
            "PixVerse API base URL; the simulator's is http://HOST:PORT/openapi/v2."),
    Setting("PIXVERSE_API_KEY", "", "PixVerse API key (sent as the API-KEY header).",
            secret=True),
    Setting("PIXVERSE_WEBHOOK_SECRET", "",
            "Secret Key PixVerse signs webhooks with; required to accept webhooks.", secret=True),
    Setting("PIXVERSE_WEBHOOK_SECRET_PREVIOUS", "",
            "The previous secret, still accepted while a rotation is under way.", secret=True),
    Setting("PIXHOOK_WEBHOOK_TOLERANCE", 300.0,
            "Seconds a webhook's timestamp may differ from now (replay window).", _seconds),
    Setting("PIXHOOK_WEBHOOK_MAX_BYTES", 65536,
            "Largest webhook body accepted; larger ones get 413.", _positive_int),
    Setting("PIXHOOK_API_TOKEN", "",
            "Bearer token for /api; empty refuses every /api call.", secret=True),
    Setting("PIXHOOK_MAX_IN_FLIGHT", 0,
            "Most jobs submitted to PixVerse and not finished at once (0 = no local limit).",
            _positive_int),
    Setting("PIXHOOK_SUBMIT_MAX_ATTEMPTS", 8,
            "Tries of one submission on ambiguous failures (same trace id) before giving up.",
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
)

_BY_ATTR: Final = {s.attr: s for s in SETTINGS}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every setting's value; build with :meth:`load` (or directly in tests)."""

    database_url: str = "sqlite:///pixhook.db"
    pixverse_base_url: str = "https://app-api.pixverse.ai/openapi/v2"
    pixverse_api_key: str = dataclasses.field(default="", repr=False)
    pixverse_webhook_secret: str = dataclasses.field(default="", repr=False)
    pixverse_webhook_secret_previous: str = dataclasses.field(default="", repr=False)
    webhook_tolerance: float = 300.0
    webhook_max_bytes: int = 65536
    api_token: str = dataclasses.field(default="", repr=False)
    max_in_flight: int = 0
    submit_max_attempts: int = 8
    poll_mode: str = "fallback"
    webhook_grace: float = 300.0
    poll_deadline: float = 6 * 3600.0
    reconcile_interval: float = 5.0
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
            try:
                values[setting.attr] = setting.cast(str(raw))
            except ValueError as exc:
                raise SettingsError(f"{setting.env}={raw!r}: {exc}") from exc
        unknown = sorted(set(file_values) - set(_BY_ATTR))
        if unknown:
            raise SettingsError(f"{path}: unknown settings {', '.join(unknown)}")
        return cls(**values, sources=sources)

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


def mask(secret: str) -> str:
    """``"sk-abcdef123"`` -> ``"sk…23 (11 chars)"``; never enough to use."""
    if not secret:
        return ""
    if len(secret) < 8:
        return "*" * len(secret)
    return f"{secret[:2]}…{secret[-2:]} ({len(secret)} chars)"
