"""Fail fast: what ``pixhook serve``, ``web`` and ``worker`` check before they start.

A process that starts half-configured looks healthy while it refuses every webhook (no
secret), every ``/api`` call (no token) or every submission (no API key). So each role names
the settings it cannot work without, and the CLI refuses to start, exit status 2, with one
line per problem (:func:`problems`). ``--dev`` or ``PIXHOOK_DEV=1`` lets a process start
without the *missing* settings (each becomes a warning); what is *wrong* (an unknown handler,
a config file that is not there, a port out of range) refuses to start in every mode.

Readiness (``/readyz``) reads the same list, so a process started with ``--dev`` is not
ready while something required is missing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final, Literal

from service import registry
from service.settings import Settings

Role = Literal["serve", "web", "worker"]

#: What each role cannot work without, and what happens otherwise.
_REQUIRED: Final[dict[str, tuple[frozenset[str], str]]] = {
    "PIXVERSE_WEBHOOK_SECRET": (frozenset({"serve", "web"}),
                                "every webhook would be refused (503)"),
    "PIXHOOK_API_TOKEN": (frozenset({"serve", "web"}), "every /api call would be refused"),
    "PIXVERSE_API_KEY": (frozenset({"serve", "worker"}), "no job could be submitted"),
}
_ATTRS: Final = {"PIXVERSE_WEBHOOK_SECRET": "pixverse_webhook_secret",
                 "PIXHOOK_API_TOKEN": "api_token", "PIXVERSE_API_KEY": "pixverse_api_key"}


def missing(settings: Settings, role: Role) -> list[str]:
    """One line per required setting ``role`` lacks."""
    return [f"{env} is not set: {why}" for env, (roles, why) in _REQUIRED.items()
            if role in roles and not getattr(settings, _ATTRS[env])]


def invalid(settings: Settings, environ: Mapping[str, str] | None = None) -> list[str]:
    """One line per setting that is set but cannot work: handlers that are not installed,
    and a ``PIXHOOK_CONFIG`` that names no file."""
    env = os.environ if environ is None else environ
    found: list[str] = []
    config = env.get("PIXHOOK_CONFIG")
    if config and not Path(config).is_file():
        found.append(f"PIXHOOK_CONFIG={config}: no such file")
    known = registry.discover()
    unknown = [name for name in settings.handlers if name not in known]
    if unknown:
        found.append(f"PIXHOOK_HANDLERS names unknown handlers: {', '.join(unknown)} "
                     f"(installed: {', '.join(sorted(known)) or 'none'})")
    return found


def port_problem(option: str, port: int | str) -> str | None:
    """Why a port cannot be listened on, or ``None``."""
    try:
        number = int(port)
    except ValueError:
        return f"{option}={port!r}: not a number"
    if not 1 <= number <= 65535:
        return f"{option}={number}: out of range (1-65535)"
    return None


def problems(settings: Settings, role: Role, environ: Mapping[str, str] | None = None,
             *, dev: bool = False) -> tuple[list[str], list[str]]:
    """``(refusals, warnings)`` for starting ``role``: in development mode what is missing
    is only a warning."""
    lacking = missing(settings, role)
    wrong = invalid(settings, environ)
    if dev or settings.dev:
        return wrong, lacking
    return wrong + lacking, []
