"""The ``pixhook`` command: a thin adapter over the Python API."""

from __future__ import annotations

import sys

import click

from service import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pixhook")
def cli() -> None:
    """pixhook: run PixVerse video generation with webhooks instead of polling."""


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8600, show_default=True, type=int, help="Port to listen on.")
@click.option("--generation-seconds", type=float, default=None,
              help="Seconds a job stays in status 5 [env PIXVERSE_SIM_GENERATION_SECONDS].")
@click.option("--webhook-url", default=None,
              help="Where the default key's webhooks go [env PIXVERSE_SIM_WEBHOOK_URL].")
def sim(host: str, port: int, generation_seconds: float | None, webhook_url: str | None) -> None:
    """Run the PixVerse simulator.

    Every other knob (credits, concurrency, chaos rates, time compression) is read from
    PIXVERSE_SIM_* variables; see service/simulator/config.py. Point a client at it with
    PIXVERSE_BASE_URL=http://HOST:PORT/openapi/v2 and PIXVERSE_API_KEY=sim-key.

    Example:

        pixhook sim --port 8600 --webhook-url http://127.0.0.1:8000/webhooks/pixverse
    """
    import uvicorn

    from service.simulator import SimulatorConfig, create_app
    from service.simulator.config import DEFAULT_API_KEY

    config = SimulatorConfig.from_env()
    if generation_seconds is not None:
        config.generation_seconds = generation_seconds
    if webhook_url is not None:
        for account in config.accounts.values():
            account.webhook_url = webhook_url
    key = next(iter(config.accounts), DEFAULT_API_KEY)
    click.echo(f"PixVerse simulator on http://{host}:{port}/openapi/v2 (API key {key!r})",
               err=True)
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")


@cli.command()
@click.option("--media-dir", default="media", show_default=True,
              help="Where downloaded videos are written.")
def demo(media_dir: str) -> None:
    """Run the demo: the simulator, a few jobs of different kinds, webhooks, downloads.

    Starts everything on free loopback ports and cleans up after itself.

    Example:

        pixhook demo --media-dir ./media
    """
    import asyncio

    from service.demo import run_demo

    sys.exit(asyncio.run(run_demo(media_dir=media_dir)))


def main() -> None:
    cli()
