"""Dashboard sessions: the server-side half of a dashboard login, shared by every replica.

The browser's cookie carries a random session id, signed (see :mod:`service.dashboard.auth`);
this table says whether that id is still a login. Only the id's SHA-256 is stored, so a copy
of the table (a backup, a read replica) logs nobody in. A session ends when it expires or is
revoked (logout); expired rows are pruned whenever a session is created.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.store.base import StoreBase, required
from service.store.connector import Transaction

#: Random bytes in a session id (256 bits: not guessable, and a plain hash is enough).
SESSION_ID_BYTES = 32


def session_hash(session_id: str) -> str:
    """What the table keeps of a session id."""
    return hashlib.sha256(session_id.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class DashboardSession:
    """One dashboard login, as stored (never its id)."""

    id_sha256: str
    #: Which API token the login was made with (an HMAC of it; the caller compares).
    token_fingerprint: str
    created_at: float
    expires_at: float
    revoked_at: float | None


def _session(row: Mapping[str, Any]) -> DashboardSession:
    return DashboardSession(
        id_sha256=row["id_sha256"], token_fingerprint=row["token_fingerprint"],
        created_at=row["created_at"], expires_at=row["expires_at"],
        revoked_at=row["revoked_at"])


class DashboardSessions(StoreBase):
    """The dashboard_sessions table."""

    async def create_dashboard_session(self, *, ttl_seconds: float,
                                       token_fingerprint: str) -> tuple[str, DashboardSession]:
        """Start a session that lasts ``ttl_seconds``; return its id (the only time it is
        seen: the store keeps its hash) and the record."""
        session_id = secrets.token_urlsafe(SESSION_ID_BYTES)

        async def op(tx: Transaction) -> DashboardSession:
            now = self._clock()
            await tx.execute(self._sql["prune_dashboard_sessions"], {"before": now})
            return _session(required(await tx.fetch_one(
                self._sql["insert_dashboard_session"], {
                    "id_sha256": session_hash(session_id),
                    "token_fingerprint": token_fingerprint,
                    "now": now, "expires_at": now + ttl_seconds})))

        return session_id, await self._db.write(op)

    async def live_dashboard_session(self, session_id: str) -> DashboardSession | None:
        """The session ``session_id`` names, unless it is unknown, expired or revoked."""
        params = {"id_sha256": session_hash(session_id), "now": self._clock()}
        row = await self._db.read(
            lambda tx: tx.fetch_one(self._sql["live_dashboard_session"], params))
        return None if row is None else _session(row)

    async def revoke_dashboard_session(self, session_id: str) -> bool:
        """End a session now, for every replica; ``False`` if it was unknown or already
        revoked."""
        params = {"id_sha256": session_hash(session_id), "now": self._clock()}
        changed = await self._db.write(
            lambda tx: tx.execute(self._sql["revoke_dashboard_session"], params))
        return changed == 1
