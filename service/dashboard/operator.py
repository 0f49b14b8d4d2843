"""The dashboard's operator pages: the tasks page (tabs by state, counts, the dead letters
with bulk retry), replaying a task, and the workers view.

* ``GET  /tasks``                ``?state=`` tabs (``dead`` is the dead-letter tab), newest first
* ``POST /tasks/retry``          revive the dead tasks ticked (``task_id``), or every one (``all``)
* ``POST /tasks/{id}/replay``    run a finished task again (a forwarded event re-sent)
* ``GET  /workers``              the worker processes, from their heartbeats

Every action answers with a redirect back to where the button was, with a confirmation that
the page shows where it stays in view (the flash is pinned to the top of the window).
"""

from __future__ import annotations

import logging
import time
from typing import Final

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from service.dashboard import auth
from service.dashboard.templating import page
from service.dashboard.views import error_page, store_errors, task_action
from service.settings import Settings
from service.store import Store, TaskState

logger = logging.getLogger(__name__)

#: Tasks shown per tab.
TASKS_PAGE_SIZE: Final = 200
#: Task states as tabs, in the order a task moves through them.
TASK_TABS: Final = [TaskState.DEAD, TaskState.PENDING, TaskState.RUNNING, TaskState.SUCCEEDED]


def _expired_form(request: Request) -> Response:
    return error_page(request, 403, "This form has expired",
                      "Go back, reload the page and press the button again.")


class OperatorPages:
    """The tasks and workers pages and the task actions;
    :func:`service.dashboard.dashboard_routes` mounts them."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self._store = store
        required = auth.login_required(settings)
        self.tasks = store_errors(required(self._tasks))
        self.bulk_retry = store_errors(required(self._bulk_retry))
        self.replay = store_errors(required(self._replay))
        self.workers = store_errors(required(self._workers))

    async def _tasks(self, request: Request) -> Response:
        state = request.query_params.get("state") or None
        if state is not None and state not in {s.value for s in TaskState}:
            return error_page(request, 400, "Unknown state",
                              f"There is no task state called “{state}”.")
        tasks = await self._store.recent_tasks(
            state=TaskState(state) if state else None, limit=TASKS_PAGE_SIZE)
        counts = await self._store.count_tasks_by_state()
        return page(request, "tasks.html", {
            "tasks": tasks, "state": state, "tabs": [s.value for s in TASK_TABS],
            "counts": {s.value: n for s, n in counts.items()},
            "total": sum(counts.values()), "page_size": TASKS_PAGE_SIZE,
            "finished": (TaskState.SUCCEEDED, TaskState.DEAD),
        })

    async def _bulk_retry(self, request: Request) -> Response:
        form = await request.form()
        if not auth.csrf_ok(request, form.get("csrf")):
            return _expired_form(request)
        if form.get("all"):
            revived = await self._store.retry_dead_tasks()
        else:
            ids = [int(v) for v in form.getlist("task_id") if isinstance(v, str) and v.isdigit()]
            if not ids:
                auth.flash(request, "Tick the dead tasks to retry first (or press Retry all).")
                return RedirectResponse("/tasks?state=dead", status_code=303)
            revived = await self._store.retry_dead_tasks(task_ids=ids[:1000])
        logger.info("dashboard: %d dead tasks retried", len(revived),
                    extra={"action": "dashboard_bulk_retry"})
        noun = "task" if len(revived) == 1 else "tasks"
        auth.flash(request, f"{len(revived)} dead {noun} will run again now."
                   if revived else "No dead tasks to retry: they were retried already.")
        return RedirectResponse("/tasks?state=dead", status_code=303)

    async def _replay(self, request: Request) -> Response:
        return await task_action(
            request, self._store.replay_task, action="dashboard_replay", verb="replayed",
            refused="{state}: it runs anyway, so there is nothing to replay.",
            done="will run again now; its new run is added to its history.",
            store=self._store)

    async def _workers(self, request: Request) -> Response:
        workers = await self._store.list_workers()
        now = time.time()
        return page(request, "workers.html", {
            "workers": [(worker, worker.age(now)) for worker in workers]})
