"""Test helpers to run apps under real uvicorn on loopback (see service/serving.py)."""

from __future__ import annotations

from service.serving import background_server as serve
from service.serving import free_port, running_server

__all__ = ["free_port", "running_server", "serve"]
