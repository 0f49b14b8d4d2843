"""``pixhook prune``: one retention pass by hand (the worker runs one every
``PIXHOOK_RETENTION_INTERVAL``), ``--dry-run`` to only count, and ``--vacuum`` to rebuild an
older SQLite file so that retention can give space back (see :mod:`service.retention`)."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import time

import click

from service import store as store_module
from service.cli import _fail, _json_out, _settings, cli, table
from service.retention import Pruner
from service.settings import Settings
from service.store import StorageError
from service.store.retention import PruneCounts


async def _pass(settings: Settings, dry_run: bool) -> PruneCounts:
    async with store_module.connect(settings.database_url) as store:
        pruner = Pruner(store, settings)
        return await (pruner.count() if dry_run else pruner.run_once())


def _vacuum(settings: Settings) -> None:
    """Rebuild a SQLite file with ``auto_vacuum = INCREMENTAL`` (files made before it was
    the default keep their pages otherwise). Needs the file to itself for its duration."""
    if store_module.is_postgres_url(settings.database_url):
        _fail("--vacuum is for SQLite; PostgreSQL's autovacuum reclaims space by itself")
    path = store_module.sqlite_path_from_url(settings.database_url)
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    try:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("VACUUM")
        mode = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
    except sqlite3.Error as exc:
        _fail(f"vacuuming {path}: {exc}")
    finally:
        conn.close()
    click.echo(f"{path}: rebuilt; auto_vacuum is {'incremental' if mode == 2 else mode}")


@cli.command()
@click.option("--dry-run", is_flag=True, help="Count what would be pruned; change nothing.")
@click.option("--vacuum", is_flag=True,
              help="SQLite: first rebuild the file so freed space goes back to the disk "
                   "(once, for files made before pixhook did so; stop the service first).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def prune(dry_run: bool, vacuum: bool, as_json: bool) -> None:
    """Prune old history now: what the worker's retention pass does.

    Finished jobs' transitions, deliveries, tasks and task runs older than
    PIXHOOK_RETENTION_DAYS, webhook nonces past the signature window, expired
    Idempotency-Keys, and videos older than PIXHOOK_MEDIA_RETENTION_DAYS (if set). Job rows
    stay. Example: pixhook prune --dry-run
    """
    settings = _settings()
    if vacuum and not dry_run:
        _vacuum(settings)
    started = time.monotonic()
    try:
        counts = asyncio.run(_pass(settings, dry_run))
    except StorageError as exc:
        _fail(f"pruning: {exc}")
    seconds = time.monotonic() - started
    if as_json:
        _json_out({**dataclasses.asdict(counts), "dry_run": dry_run,
                   "seconds": round(seconds, 3)})
        return
    verb = "would prune" if dry_run else "pruned"
    click.echo(table([(name.replace("_", " "), value)
                      for name, value in dataclasses.asdict(counts).items()],
                     ["what", verb]))
    if not dry_run:
        click.echo(f"in {seconds:.1f} s")
