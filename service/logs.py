"""Logging for the ``pixhook`` command: one line per event, text or JSON, secrets masked.

pixhook's modules log through module loggers with ``extra={"action": ..., "job_id": ...}``;
this module decides how those records are written, once per process
(:func:`configure_logging`, called by the CLI with ``PIXHOOK_LOG_LEVEL`` and
``PIXHOOK_LOG_FORMAT``):

* ``text``: ``2026-01-02T03:04:05.678Z INFO service.receiver: webhook ... [action=webhook
  job_id=...]``, for people;
* ``json``: one object per line, ``{"ts", "level", "logger", "msg", "job_id", "task_id",
  "action", ...}`` with every ``extra`` key, and ``exc`` for a traceback, for log shippers.

Masking happens on the *formatted* line, so a secret is caught wherever it ended up: in the
message, its arguments, an ``extra`` value or an exception's text. The secrets are the values
of every setting declared ``secret=True`` (API key, webhook secrets, API and metrics tokens,
Slack URL, forward secret, secret key) and secret-looking handler options.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

from service.settings import SETTINGS, Settings

#: The name of the handler :func:`configure_logging` installs (so a second call replaces it).
_HANDLER_NAME: Final = "pixhook"
#: Loggers that log every request's URL at INFO (URLs can carry secrets); kept to warnings.
QUIET_LOGGERS: Final = ("httpx", "httpcore")
#: Handler options whose values are masked like secret settings.
SECRET_OPTION: Final = re.compile(r"secret|token|password|passwd|api_key|webhook_url|dsn")
#: A URL-valued secret's path is masked on its own too, if at least this long (a Slack
#: webhook URL's path is the credential, and may be logged without its host).
MIN_SECRET_PATH_CHARS: Final = 16

#: Attributes every LogRecord has; anything else on a record came from ``extra``.
_RECORD_FIELDS: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime",
                                                                "taskName",
                                                                # uvicorn's ANSI-coloured copy
                                                                "color_message"}


def secrets_of(settings: Settings) -> dict[str, str]:
    """Secret values to mask, each with the name it is masked as."""
    found: dict[str, str] = {}
    for setting in SETTINGS:
        value = getattr(settings, setting.attr)
        if setting.secret and isinstance(value, str) and value:
            found[value] = setting.env
            path = urlsplit(value).path if "://" in value else ""
            if len(path) >= MIN_SECRET_PATH_CHARS:
                found.setdefault(path, setting.env)
    for handler, options in settings.handler_options.items():
        for option, value in options.items():
            if isinstance(value, str) and value and SECRET_OPTION.search(option):
                found.setdefault(value, f"handler.{handler}.{option}")
    return found


class SecretMasker:
    """Replaces each secret in a text with ``[masked NAME]``, the longest secret first (so
    one secret inside another is not half-masked). A secret is also found as it appears
    inside a JSON string (escaped)."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        forms: dict[str, str] = {}
        for value, name in secrets.items():
            if value:
                forms[value] = name
                forms.setdefault(json.dumps(value, ensure_ascii=False)[1:-1], name)
        self._pattern = (re.compile("|".join(re.escape(v) for v in
                                             sorted(forms, key=len, reverse=True)))
                         if forms else None)
        self._names = forms

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda match: f"[masked {self._names[match.group()]}]", text)


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {key: value for key, value in record.__dict__.items()
            if key not in _RECORD_FIELDS and not key.startswith("_")}


class TextFormatter(logging.Formatter):
    """``TS LEVEL logger: message [key=value ...]``, secrets masked."""

    def __init__(self, masker: SecretMasker) -> None:
        super().__init__()
        self._mask = masker

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " [" + " ".join(f"{key}={value}" for key, value in extras.items()) + "]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return self._mask(line)


class JSONFormatter(logging.Formatter):
    """One JSON object per record, on one line, secrets masked."""

    def __init__(self, masker: SecretMasker) -> None:
        super().__init__()
        self._mask = masker

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {"ts": _timestamp(record), "level": record.levelname.lower(),
                                 "logger": record.name, "msg": record.getMessage()}
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return self._mask(json.dumps(entry, default=str, ensure_ascii=False))


def configure_logging(settings: Settings | None = None, *, level: str | None = None,
                      json_format: bool | None = None, extra_secrets: Iterable[str] = (),
                      stream: TextIO | None = None) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) at ``level`` and in the chosen format
    (by default ``PIXHOOK_LOG_LEVEL`` and ``PIXHOOK_LOG_FORMAT`` from ``settings``), masking
    the secrets of ``settings`` and ``extra_secrets``. Calling it again replaces the handler
    it installed before; other handlers on the root logger are left alone. Returns the
    handler.

    Under uvicorn, pass ``log_config=None`` to it, so its loggers propagate here (and are
    masked and formatted the same) instead of writing through handlers of their own.
    """
    if level is None:
        level = settings.log_level if settings is not None else "info"
    if json_format is None:
        json_format = settings is not None and settings.log_format == "json"
    secrets = secrets_of(settings) if settings is not None else {}
    for value in extra_secrets:
        secrets.setdefault(value, "secret")
    masker = SecretMasker(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter(masker) if json_format else TextFormatter(masker))
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(logging.getLevelNamesMapping()[level.upper()])
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler

