"""Test helpers to run apps under real uvicorn on loopback (see service/serving.py)."""

from __future__ import annotations

from service.serving import background_server as serve
from service.serving import running_server

__all__ = ["running_server", "serve"]
