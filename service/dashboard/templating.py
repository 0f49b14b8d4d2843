"""Jinja2 templates for the dashboard, autoescaped, plus the headers every page carries.

Pages are rendered on the server and work without JavaScript (the script only adds live
updates), so there is no build step: the templates, one CSS file and one script ship in the
package. The Content-Security-Policy allows only this origin's own scripts and styles, which
is why no template has an inline ``<script>`` or ``style=``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from service.dashboard import auth, present
from service.lifecycle import JobState

TEMPLATE_DIR: Final = Path(__file__).parent / "templates"
STATIC_DIR: Final = Path(__file__).parent / "static"

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
        "script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
        "base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Pages show live data and a CSRF token: never from a cache.
    "Cache-Control": "no-store",
}

#: What the empty jobs list suggests running: a complete request (a test runs it).
EMPTY_STATE_COMMAND: Final = (
    'pixhook submit text_to_video --prompt "a lantern over a lake" --param model=v6 '
    "--param duration=5 --param quality=540p --param aspect_ratio=16:9")

templates: Final = Jinja2Templates(directory=str(TEMPLATE_DIR))
templates.env.filters.update(age=present.age, clock=present.clock,
                             state_class=present.state_class)
templates.env.globals.update(JOB_STATES=[state.value for state in JobState],
                             EMPTY_STATE_COMMAND=EMPTY_STATE_COMMAND)


def page(request: Request, name: str, context: dict[str, Any] | None = None, *,
         status_code: int = 200, logged_in: bool = True) -> Response:
    """Render a page with what every page needs (CSRF token, flash message, login)."""
    full = {"csrf": auth.csrf_token(request), "flash": auth.pop_flash(request),
            "logged_in": logged_in, "alerts": _alerts(request) if logged_in else [],
            **(context or {})}
    response = templates.TemplateResponse(request, name, full, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response


def _alerts(request: Request) -> list[dict[str, str]]:
    """The deployment's raised alerts, as this process's monitor last read them (the banner
    every page shows; service/alerts.py)."""
    from service.alerts import TITLES, Cause

    services = getattr(request.app.state, "services", None)
    monitor = getattr(services, "alerts", None)
    return [{"cause": alert.cause, "detail": alert.detail,
             "title": TITLES[Cause(alert.cause)] if alert.cause in set(Cause) else alert.cause}
            for alert in getattr(monitor, "active", [])]


def row_html(row: present.JobRow, failed: list[str] | None = None) -> str:
    """One ``<tr>`` of the jobs list, exactly as the page renders it (``failed``: the
    handlers whose tasks are dead, marked on the row)."""
    macro = templates.env.get_template("_rows.html").module.job_row  # type: ignore[attr-defined]
    html: Markup = macro(row, failed or [])
    return str(html)
