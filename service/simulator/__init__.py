"""A local PixVerse simulator: the ``/openapi/v2`` API, result media, webhooks and chaos.

    >>> from service.simulator import create_app, SimulatorConfig
    >>> app = create_app(SimulatorConfig(generation_seconds=0.1))  # doctest: +SKIP

Serve it with uvicorn; ``/_sim`` is its inspection surface (:mod:`service.simulator.inspect`).
"""

from __future__ import annotations

from service.simulator.app import create_app
from service.simulator.config import Account, ChaosConfig, SimulatorConfig

__all__ = ["Account", "ChaosConfig", "SimulatorConfig", "create_app"]
