"""``pixhook workers``: the worker processes the database has heard from, and whether each
is alive (its last heartbeat is younger than ``PIXHOOK_WORKER_STALE_AFTER``). It reads the
database directly, as ``reconcile`` does, so it works with the web role down too."""

from __future__ import annotations

import asyncio
import time

import click

from service import store as store_module
from service.cli import _age, _fail, _json_out, _settings, cli, table
from service.store import StorageError, WorkerHeartbeat


async def _list(database_url: str) -> list[WorkerHeartbeat]:
    async with store_module.connect(database_url) as store:
        return await store.list_workers()


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def workers(as_json: bool) -> None:
    """List worker processes: host, pid, roles, version, uptime, last beat, tasks running.

    A worker is "stale" when it has not beaten for PIXHOOK_WORKER_STALE_AFTER seconds
    (frozen, overloaded, or killed without a goodbye). Example: pixhook workers
    """
    settings = _settings()
    try:
        found = asyncio.run(_list(settings.database_url))
    except StorageError as exc:
        _fail(f"reading workers from the database: {exc}")
    now = time.time()

    def status(worker: WorkerHeartbeat) -> str:
        return "ok" if worker.age(now) <= settings.worker_stale_after else "stale"

    if as_json:
        _json_out([{**w.as_dict(), "status": status(w), "age": round(w.age(now), 3)}
                   for w in found])
        return
    if not found:
        click.echo("no workers (start one with `pixhook worker`)")
        return
    click.echo(table([(w.id, w.host, w.pid, ",".join(w.roles), w.version, _age(w.started_at),
                       f"{w.age(now):.1f}s ago", w.tasks_running, status(w)) for w in found],
                     ["id", "host", "pid", "roles", "version", "up", "last beat", "tasks",
                      "status"]))
