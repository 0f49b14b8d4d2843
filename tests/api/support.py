"""The ``/api`` app on real uvicorn, for the tests in ``tests/api``.

The app runs without its worker role and points PixVerse at a port where nothing listens, so
jobs stay ``queued`` and a test sees exactly what ``/api`` committed. Tests start apps with
:func:`api_app` on the ``database_url`` fixture (``tests/api/conftest.py``: SQLite, then
PostgreSQL).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from service.app import create_app
from service.settings import Settings
from tests.support.servers import running_server

TOKEN = "api-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T2V = {"prompt": "a lantern over a lake", "model": "v6", "duration": 5, "quality": "540p",
       "aspect_ratio": "16:9"}


def api_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url, "api_token": TOKEN, "handlers": (), "poll_mode": "off",
        # Nothing listens there: submissions would stay queued, never sent.
        "pixverse_base_url": "http://127.0.0.1:9/openapi/v2", "secret_key": "api-test-key",
        **overrides}
    return Settings(**values)


@contextlib.asynccontextmanager
async def api_app(database_url: str, port: int = 0, **overrides: Any) -> AsyncIterator[str]:
    """Serve the app (web role only) on this event loop; yield its base URL."""
    app = create_app(api_settings(database_url, **overrides), run_background=False)
    async with running_server(app, port=port) as url:
        yield url
