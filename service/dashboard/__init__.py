"""The operator dashboard, served by the web process at ``/``.

* ``GET  /``                     jobs, newest first, live (``?state=`` filters, ``?cursor=`` pages)
  ``?q=`` searches (job, trace or video id; prompt; label ``key=value``)
* ``GET  /jobs/{id}``            one job: timeline, handler tasks and runs, the video
* ``POST /tasks/{id}/retry``     revive a dead task (form, CSRF token)
* ``GET  /tasks``, ``POST /tasks/retry``, ``POST /tasks/{id}/replay``, ``GET /workers``  the
  operator's pages (:mod:`service.dashboard.operator`): tasks by state, the dead letters and
  bulk retry, replay, and the workers
* ``GET|POST /login``, ``POST /logout``   the API token for a session (stored, and named by a
  signed cookie); logging out ends it server-side; failed logins are rate-limited
* ``GET  /events``               server-sent events behind the live updates
* ``/static/dashboard/...``      the stylesheet and the script (no build step)

Wire it into an app with ``Starlette(routes=[..., *dashboard_routes(services)])``. The
session middleware wraps the dashboard's own routes only: webhooks, ``/api`` and ``/media``
never pay for reading a session cookie (nor for the store lookup behind it) they do not use.
"""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from service.dashboard.events import LiveEvents
from service.dashboard.operator import OperatorPages
from service.dashboard.present import CreditsBook
from service.dashboard.session import dashboard_middleware
from service.dashboard.templating import STATIC_DIR
from service.dashboard.views import DashboardPages
from service.services import Services

__all__ = ["STATIC_PATH", "dashboard_middleware", "dashboard_routes"]

#: Where the stylesheet and script are served from.
STATIC_PATH = "/static/dashboard"


def dashboard_routes(services: Services) -> list[BaseRoute]:
    """The dashboard's routes, on the store and settings of ``services``."""
    credits = CreditsBook(services.store)
    pages = DashboardPages(services.settings, services.store, credits)
    operator = OperatorPages(services.settings, services.store)
    events = LiveEvents(services.settings, services.store, credits)
    session = dashboard_middleware(services.settings, services.store)
    return [
        Route("/", pages.jobs, methods=["GET"], name="dashboard:jobs", middleware=session),
        Route("/jobs/{job_id}", pages.job, methods=["GET"], name="dashboard:job",
              middleware=session),
        Route("/tasks/{task_id:int}/retry", pages.retry_task, methods=["POST"],
              name="dashboard:retry", middleware=session),
        Route("/tasks", operator.tasks, methods=["GET"], name="dashboard:tasks",
              middleware=session),
        Route("/tasks/retry", operator.bulk_retry, methods=["POST"],
              name="dashboard:bulk_retry", middleware=session),
        Route("/tasks/{task_id:int}/replay", operator.replay, methods=["POST"],
              name="dashboard:replay", middleware=session),
        Route("/workers", operator.workers, methods=["GET"], name="dashboard:workers",
              middleware=session),
        Route("/login", pages.login_form, methods=["GET"], name="dashboard:login_form",
              middleware=session),
        Route("/login", pages.login, methods=["POST"], name="dashboard:login",
              middleware=session),
        Route("/logout", pages.logout, methods=["POST"], name="dashboard:logout",
              middleware=session),
        Route("/events", events.endpoint, methods=["GET"], name="dashboard:events",
              middleware=session),
        Mount(STATIC_PATH, app=StaticFiles(directory=STATIC_DIR), name="dashboard:static"),
    ]
