"""Migrations: the numbered scripts under ``sql/migrations/``, written once for both databases,
applied in order when the store opens.

:func:`migrate` runs in one write transaction that first takes the ``migrations`` lock, so
processes opening the same database together apply each migration once (the others wait, then
find nothing to do), and a failed migration leaves nothing behind. Each applied migration is
recorded (SQLite: sqlite-utils' ``_sqlite_migrations``, where the first releases recorded
theirs; PostgreSQL: ``pixhook_migrations``). Add a migration by adding a file; never edit one
that has shipped.
"""

from __future__ import annotations

import time

from service.store.connector import Transaction
from service.store.errors import SchemaError
from service.store.sql import Queries, migration_names


async def migrate(tx: Transaction, sql: Queries) -> list[str]:
    """Apply pending migrations; return the names applied.

    Raises :class:`SchemaError` if the database records a migration this code does not know
    (a newer pixhook wrote it).
    """
    known = migration_names()
    await tx.lock("migrations")
    await tx.execute_script(sql["create_migrations_table"])
    applied = {row["name"] for row in await tx.fetch_all(sql["applied_migrations"])}
    unknown = sorted(applied - set(known))
    if unknown:
        raise SchemaError(
            f"database has migrations this pixhook does not know: {', '.join(unknown)}; "
            "it was written by a newer version")
    pending = [name for name in known if name not in applied]
    for name in pending:
        await tx.execute_script(sql.script(name))
        await tx.execute(sql["record_migration"], {"name": name, "now": time.time()})
    return pending
