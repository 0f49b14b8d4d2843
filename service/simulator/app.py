"""Wiring: the simulator's Starlette app (routes, chaos middleware, lifespan)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount

from service.simulator import api, inspect, media, pricing, uploads
from service.simulator.api_chaos import API_PREFIX, APIChaosMiddleware, ChaosDice
from service.simulator.config import SimulatorConfig
from service.simulator.state import Dispatcher, SimulatorState


def create_app(
    config: SimulatorConfig | None = None,
    *,
    dispatcher: Dispatcher | None = None,
    price_function: pricing.PriceFunction = pricing.price,
) -> Starlette:
    """Build a PixVerse simulator.

    ``config`` defaults to ``SimulatorConfig()``; ``dispatcher`` to the real
    ``service.simulator.webhooks.WebhookDispatcher(config)``. The state is reachable as
    ``app.state.simulator`` (a :class:`SimulatorState`).
    """
    config = config or SimulatorConfig()
    if dispatcher is None:
        from service.simulator.webhooks import WebhookDispatcher

        dispatcher = WebhookDispatcher(config)
    state = SimulatorState(config, dispatcher, price_function=price_function)
    dice = ChaosDice(config.chaos)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await dispatcher.start()
        await state.start()
        try:
            yield
        finally:
            await state.stop()
            await dispatcher.stop()

    app = Starlette(
        routes=[
            Mount(API_PREFIX, routes=api.routes() + uploads.routes()),
            Mount("/_sim", routes=inspect.routes),
            *media.routes,
        ],
        middleware=[Middleware(APIChaosMiddleware, dice=dice)],
        lifespan=lifespan,
    )
    app.state.simulator = state
    app.state.chaos_dice = dice
    return app
