"""The ``pixhook`` command (also ``python -m service``): a thin adapter over the Python API.

Process commands (``serve``, ``web``, ``worker``, ``sim``, ``demo``) run parts of pixhook;
client commands (``submit``, ``status``, ``jobs``, ``events``, ``cancel``, ``tasks``) talk to
a running service's ``/api`` at ``PIXHOOK_URL`` with ``PIXHOOK_API_TOKEN``, as does
``reconcile`` (the service runs the pass); ``balance`` and ``config`` work from the local
settings. Read commands take ``--json`` for scripts. Errors are one clear line on stderr that
names the fix, and a distinct exit code (:mod:`service.cli_output`): 0 done, 1 "the answer is
no" (a job that failed, an unknown id), 2 usage, connection and configuration problems, 3 a
``--wait`` that timed out, 130 Ctrl-C. Colour only on a terminal, never with ``NO_COLOR``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
import httpx

from service import __version__
from service.cli_output import (
    FAILED,
    INTERRUPTED,
    TIMED_OUT,
    USAGE,
    PixhookGroup,
    echo,
    fail,
    paint,
    use_colour,
)
from service.lifecycle import JobState
from service.settings import Settings, SettingsError

TERMINAL = frozenset({"succeeded", "failed", "moderation_failed", "rejected", "deleted"})


def _fail(message: str, code: int = USAGE) -> NoReturn:
    fail(message, code)


def _settings() -> Settings:
    try:
        return Settings.load()
    except SettingsError as exc:
        _fail(str(exc))


def _json_out(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _age(epoch: float) -> str:
    seconds = max(0, int(time.time() - epoch))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], *,
          shade: str | None = None) -> str:
    """A plain, aligned text table (what ``jobs``, ``tasks`` and ``config`` print); the
    column headed ``shade`` (a state) is coloured on a terminal."""
    cells = [[str(h) for h in headers], *[["-" if v is None else str(v) for v in row]
                                         for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    colour = shade is not None and use_colour()

    def cell(value: str, width: int, column: str, header: bool) -> str:
        padding = " " * (width - len(value))  # measured before colour adds escapes
        return (paint(value, colour=True) if colour and column == shade and not header
                else value) + padding

    lines = ["  ".join(cell(value, width, column, n == 0) for value, width, column
                       in zip(row, widths, headers, strict=True)).rstrip()
             for n, row in enumerate(cells)]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _cut(text: str | None, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis when longer."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[:width - 1] + "\u2026"


class ServiceClient:
    """The service's ``/api``, with errors turned into CLI messages."""

    def __init__(self, settings: Settings) -> None:
        if not settings.api_token:
            _fail("PIXHOOK_API_TOKEN is not set; the service refuses /api calls without it")
        self.base = settings.url.rstrip("/")
        scheme, sep, rest = self.base.partition("://")
        if not sep or scheme.lower() not in ("http", "https"):
            _fail(f"PIXHOOK_URL={settings.url!r} does not start with http:// or https://; "
                  f"add it, e.g. PIXHOOK_URL=http://{rest or scheme}")
        self._http = httpx.Client(base_url=self.base, timeout=30, headers={
            "Authorization": f"Bearer {settings.api_token}"})
        click.get_current_context().call_on_close(self._http.close)

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            _fail(f"cannot reach pixhook at {self.base} ({type(exc).__name__}); is "
                  "`pixhook serve` running, and is PIXHOOK_URL right?")
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code == 401:
            _fail("the service refused the API token (PIXHOOK_API_TOKEN)")
        if response.status_code >= 400 and isinstance(body, dict) and "error" in body:
            field = f" ({body['field']})" if body.get("field") else ""
            _fail(f"{body['error']}{field}",
                  FAILED if response.status_code in (404, 409) else USAGE)
        if response.status_code >= 400 or body is None:
            # pixhook's /api always answers JSON, errors as {"error": ...}: this is not it.
            _fail(f"{self.base} answered {method} {path} with {response.status_code} "
                  f"{response.reason_phrase}, not as pixhook's /api does: is PIXHOOK_URL "
                  "the address `pixhook serve` listens on (no path after the port)?")
        return body


# -- the group ----------------------------------------------------------------------------


@click.group(cls=PixhookGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pixhook")
def cli() -> None:
    """pixhook: run PixVerse video generation with webhooks instead of polling.

    Settings come from PIXHOOK_* / PIXVERSE_* variables or ./pixhook.toml; `pixhook config`
    shows them all.
    """


# -- processes ----------------------------------------------------------------------------


def _port_option(default: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    # A string, checked with the settings (start-up refusals are one line each, not usage).
    return click.option("--port", default=lambda: os.environ.get("PORT", str(default)),
                        show_default=f"$PORT or {default}", help="Port to listen on.")


_dev_option = click.option(
    "--dev", is_flag=True,
    help="Development mode (as PIXHOOK_DEV=1): start without the API key, webhook secret or "
         "API token, with a warning for each.")


def _start(role: str, dev: bool, ports: dict[str, str | None]) -> tuple[Settings, list[int]]:
    """The settings a process command starts with, or exit 2 with one line per problem
    (service/startup.py says what each role needs); and its ports as numbers."""
    from service import startup

    settings = _settings()
    refusals, warnings = startup.problems(settings, role, dev=dev)  # type: ignore[arg-type]
    refusals += [problem for option, port in ports.items() if port is not None
                 and (problem := startup.port_problem(option, port)) is not None]
    for line in refusals:
        click.echo(f"error: {line}", err=True)
    if refusals:
        click.echo(f"pixhook {role} did not start; fix the above, or for development start "
                   "it with --dev (PIXHOOK_DEV=1)", err=True)
        sys.exit(2)
    for line in warnings:
        click.echo(f"warning: {line} (development mode)", err=True)
    return settings, [int(port) for port in ports.values() if port is not None]


def _serve(run_background: bool, host: str, port_text: str, dev: bool) -> None:
    import uvicorn

    from service import tracing
    from service.app import create_app
    from service.logs import configure_logging
    from service.serving import raise_open_file_limit

    settings, (port,) = _start("serve" if run_background else "web", dev,
                               {"--port": port_text})
    configure_logging(settings)
    tracing.configure()
    raise_open_file_limit()  # each connection holds a descriptor; 1024 is starved easily
    uvicorn.run(create_app(settings, run_background=run_background), host=host, port=port,
                log_level=settings.log_level, access_log=settings.access_log,
                log_config=None,  # keep our format and secret masking for uvicorn's loggers
                proxy_headers=False)  # PIXHOOK_TRUST_PROXY_HEADERS decides, not uvicorn


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@_port_option(8000)
@_dev_option
def serve(host: str, port: str, dev: bool) -> None:
    """Run everything in one process: web (receiver, /api, dashboard) and worker.

    The embedded default, on SQLite. Example:

        PIXVERSE_API_KEY=... PIXVERSE_WEBHOOK_SECRET=... PIXHOOK_API_TOKEN=... pixhook serve
    """
    _serve(True, host, port, dev)


@cli.command()
@click.option("--host", default="0.0.0.0", show_default=True, help="Interface to listen on.")
@_port_option(8000)
@_dev_option
def web(host: str, port: str, dev: bool) -> None:
    """Run the web role only: webhook receiver, /api, /media, dashboard, metrics.

    Pair it with `pixhook worker` processes (see the Procfile). Example:

        PORT=8000 pixhook web
    """
    _serve(False, host, port, dev)


@cli.command()
@click.option("--health-port", default=None,
              help="Also serve /healthz, /readyz and /metrics on this port.")
@click.option("--health-host", default="0.0.0.0", show_default=True,
              help="Interface for --health-port.")
@_dev_option
def worker(health_port: str | None, health_host: str, dev: bool) -> None:
    """Run the worker role only: submitter, reconciler and handler tasks.

    Example:

        pixhook worker --health-port 9100
    """
    from service import tracing
    from service.logs import configure_logging
    from service.services import run_worker_process

    settings, ports = _start("worker", dev, {"--health-port": health_port})
    configure_logging(settings)
    tracing.configure()
    asyncio.run(run_worker_process(settings, health_host=health_host,
                                   health_port=ports[0] if ports else None))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8600, show_default=True, type=click.IntRange(1, 65535),
              help="Port to listen on.")
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
    """Run the demo: simulator, pixhook and a Slack stand-in, a few jobs, a summary.

    Starts everything on free loopback ports with a fresh database and cleans up after
    itself. Example:

        pixhook demo --media-dir ./media
    """
    from service.demo import run_demo

    sys.exit(asyncio.run(run_demo(media_dir=media_dir)))


# -- client commands ----------------------------------------------------------------------


def _parse_param(text: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"{text!r} is not KEY=VALUE", param_hint="--param")
    try:
        value = json.loads(raw)  # numbers, booleans, lists; anything else stays a string
    except ValueError:
        value = raw
    return key, value


def _parse_step(text: str) -> dict[str, Any]:
    if text.lstrip().startswith("{"):
        try:
            step = json.loads(text)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--then") from exc
        if not isinstance(step, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--then")
        return step
    return {"kind": text, "params": {}}


def _upload_image(path: Path, settings: Settings) -> int:
    from service.pixverse import PixVerseClient, PixVerseError

    async def upload() -> int:
        async with PixVerseClient(settings.pixverse_api_key,
                                  base_url=settings.pixverse_base_url) as pixverse:
            uploaded = await pixverse.upload_image(path)
            return uploaded.img_id

    if not settings.pixverse_api_key:
        _fail("--image uploads straight to PixVerse: set PIXVERSE_API_KEY")
    with click.progressbar(length=1, label=f"uploading {path.name}", file=sys.stderr) as bar:
        try:
            img_id = asyncio.run(upload())
        except PixVerseError as exc:
            _fail(f"uploading {path}: {exc}")
        bar.update(1)
    return img_id


@cli.command()
@click.argument("kind")
@click.option("--prompt", help="The prompt (params.prompt).")
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Upload this image to PixVerse first and pass its img_id.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A request parameter; VALUE is JSON if it parses (5, true, [1,2], "
                   "{\"a\": 1}). One pixhook does not know is sent to PixVerse as given, "
                   "with a warning.")
@click.option("--then", "steps", multiple=True, metavar="STEP",
              help='A follow-up step: a kind, or {"kind": ..., "params": {...}}. Repeatable.')
@click.option("--callback-url", help="Forward this job's events here (signed).")
@click.option("--label", "labels", multiple=True, metavar="KEY=VALUE", help="A label.")
@click.option("--wait", type=click.Choice(["chain", "handlers"]), is_flag=False,
              flag_value="chain", default=None,
              help="Follow the job and its --then chain until they finish, with each job's "
                   "download (--wait); with --wait=handlers, every handler task too.")
@click.option("--timeout", default=600.0, show_default=True,
              help="Seconds --wait waits (then exit 3; the job goes on).")
@click.option("--json", "as_json", is_flag=True, help="Print the job as JSON.")
def submit(kind: str, prompt: str | None, image: Path | None, params: tuple[str, ...],
           steps: tuple[str, ...], callback_url: str | None, labels: tuple[str, ...],
           wait: str | None, timeout: float, as_json: bool) -> None:
    """Submit a job of KIND (text_to_video, image_to_video, extend, ...).

    --wait follows the job, the follow-up jobs its --then steps make, and each one's download
    (and its follow-up task), then prints each job and its video link. --wait=handlers waits
    for every handler task too (Slack, forward, ...). Exit status with --wait: 0 if every job
    succeeded and no task waited for is dead, 1 otherwise, 3 if --timeout ran out, 130 on
    Ctrl-C; the job goes on after 3 and 130.

    Example:

    \b
        pixhook submit text_to_video --prompt "a lantern over a lake" \\
            --param model=v6 --param duration=5 --param quality=540p \\
            --param aspect_ratio=16:9 \\
            --then '{"kind": "sound_effect", "params": {"sound_effect_content": "wind"}}' \\
            --wait=handlers
    """
    settings = _settings()
    body_params: dict[str, Any] = dict(_parse_param(p) for p in params)
    if prompt is not None:
        body_params["prompt"] = prompt
    client = ServiceClient(settings)
    if image is not None:
        body_params["img_id"] = _upload_image(image, settings)
    body: dict[str, Any] = {"kind": kind, "params": body_params,
                            "then": [_parse_step(s) for s in steps]}
    if callback_url:
        body["callback_url"] = callback_url
    if labels:
        body["labels"] = {k: str(v) for k, v in (_parse_param(label) for label in labels)}
    # One key per invocation: if this request is ever sent again (a retry), the service
    # answers with the job it made instead of making a second one.
    job: dict[str, Any] = client.call("POST", "/api/jobs", json=body,
                                      headers={"Idempotency-Key": str(uuid.uuid4())})
    for warning in job.get("warnings", []):  # unknown params: sent, but worth a look
        click.echo(f"warning: {warning}", err=True)
    if wait is None:
        _json_out(job) if as_json else click.echo(job["id"])
        return
    _submit_wait(client, job["id"], timeout, handlers=wait == "handlers", as_json=as_json)


def _submit_wait(client: ServiceClient, job_id: str, timeout: float, *, handlers: bool,
                 as_json: bool) -> NoReturn:
    from service import cli_wait

    try:
        outcome = cli_wait.wait(client.call, job_id, timeout, handlers=handlers)
    except KeyboardInterrupt:
        echo(f"\ninterrupted: stopped waiting; job {job_id} goes on "
             f"(pixhook status {job_id})", err=True)
        sys.exit(INTERRUPTED)
    except cli_wait.TimedOut as exc:
        _fail(f"timed out after {timeout:g} s: {exc}; it goes on (pixhook status "
              f"{exc.job_id}, or --timeout)", TIMED_OUT)
    if as_json:
        first, *rest = outcome.jobs
        _json_out({**first, "chain": rest})
        sys.exit(outcome.code)
    for done in outcome.jobs:
        error = f": {done['last_error']}" if done.get("last_error") else ""
        echo(f"{done['id']} {paint(done['state'])}{error}")
        if (video := cli_wait.file_of(done)) is not None:
            echo(f"  video  {video}")
        for task in done.get("tasks", []):
            if task["state"] == "dead":
                echo(f"  task {task['id']} {task['handler']} {paint('dead')}: "
                     f"{task['last_error']} (pixhook tasks retry {task['id']})")
    sys.exit(outcome.code)


def _json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)


@cli.command()
@click.argument("job_id")
@_json_option
def status(job_id: str, as_json: bool) -> None:
    """Show one job. Example: pixhook status job_01H..."""
    job: dict[str, Any] = ServiceClient(_settings()).call("GET", f"/api/jobs/{job_id}")
    if as_json:
        _json_out(job)
        return
    fields = [("id", job["id"]), ("kind", job["kind"]), ("state", job["state"]),
              ("video id", job.get("video_id_str")), ("prompt", job["params"].get("prompt")),
              ("created", _when(job["created_at"])), ("changed", _when(job["state_changed_at"])),
              ("last error", job.get("last_error")), ("video link", job.get("media_url")),
              ("cancelled", job.get("cancelled_at") and _when(job["cancelled_at"])),
              ("parent", job.get("parent_job_id")),
              ("then", ", ".join(step["kind"] for step in job["then"]) or None)]
    for name, value in fields:
        if value is not None:
            echo(f"{name:<11} {paint(value) if name == 'state' else value}")
    for task in job.get("tasks", []):
        echo(f"{'task':<11} {task['handler']} {paint(task['state'])} "
             f"(attempt {task['attempts']})")


@cli.command()
@click.option("--state", type=click.Choice([s.value for s in JobState]),
              help="Only jobs in this state.")
@click.option("--kind", help="Only jobs of this kind.")
@click.option("--search", "-q", "search", metavar="TERM",
              help="Only jobs matching TERM: a job, trace or video id, or text in the prompt "
                   "or a label (key=value).")
@click.option("--limit", default=50, show_default=True, help="How many (newest first).")
@_json_option
def jobs(state: str | None, kind: str | None, search: str | None, limit: int,
         as_json: bool) -> None:
    """List jobs, newest first. Example: pixhook jobs --state failed -q lantern"""
    query = {k: v for k, v in {"state": state, "kind": kind, "q": search,
                               "limit": str(limit)}.items() if v}
    page: dict[str, Any] = ServiceClient(_settings()).call("GET", "/api/jobs", params=query)
    if as_json:
        _json_out(page["jobs"])
        return
    if not page["jobs"]:
        click.echo("no jobs")
        return
    echo(table([(j["id"], j["kind"], j["state"], _age(j["created_at"]),
                 _cut(j["params"].get("prompt"), 40)) for j in page["jobs"]],
               ["id", "kind", "state", "age", "prompt"], shade="state"))


@cli.command()
@click.argument("job_id")
@_json_option
def events(job_id: str, as_json: bool) -> None:
    """Show a job's timeline: every message and what it did. Example: pixhook events job_01H..."""
    job: dict[str, Any] = ServiceClient(_settings()).call("GET", f"/api/jobs/{job_id}")
    if as_json:
        _json_out(job["transitions"])
        return
    rows = [(t["received_at"], t["source"], t["from_state"], t["to_state"], t["outcome"],
             t["reason"]) for t in job["transitions"]]
    # Verified webhooks that changed nothing (an unknown status code): in time order too.
    rows += [(d["received_at"], "webhook", None, None, "not applied", d["error"])
             for d in job.get("unapplied_webhooks", [])]
    rows.sort(key=lambda row: row[0] or 0.0)
    click.echo(table([(_when(row[0]), *row[1:]) for row in rows],
                     ["received", "source", "from", "to", "outcome", "reason"]))


@cli.command()
@click.argument("job_id")
@_json_option
def cancel(job_id: str, as_json: bool) -> None:
    """Cancel a job. Exit status 1 if it is unknown or already finished.

    A job PixVerse has not accepted yet is never sent (it ends rejected). PixVerse has no
    cancel, so a job it accepted is still made and its credits are spent, but no handler or
    follow-up runs for it. Example: pixhook cancel job_01H...
    """
    job: dict[str, Any] = ServiceClient(_settings()).call("POST", f"/api/jobs/{job_id}/cancel")
    if as_json:
        _json_out(job)
    elif job["state"] == "rejected" and job.get("video_id") is None:
        click.echo(f"job {job['id']} cancelled: PixVerse never accepted it")
    else:
        click.echo(f"job {job['id']} cancelled: PixVerse has it ({job['state']}) and makes the "
                   "video anyway; no handler or follow-up runs for it")


@cli.group(invoke_without_command=True)
@click.option("--state", type=click.Choice(["pending", "running", "succeeded", "dead"]),
              help="Only tasks in this state.")
@click.option("--job", "job_id", help="Only this job's tasks.")
@click.option("--handler", help="Only this handler's tasks.")
@_json_option
@click.pass_context
def tasks(ctx: click.Context, state: str | None, job_id: str | None, handler: str | None,
          as_json: bool) -> None:
    """List handler tasks (dead ones included), newest first.

    Example: pixhook tasks --state dead"""
    if ctx.invoked_subcommand is not None:
        return
    query = {k: v for k, v in {"state": state, "job_id": job_id, "handler": handler,
                               "order": "newest"}.items() if v}
    page: dict[str, Any] = ServiceClient(_settings()).call("GET", "/api/tasks", params=query)
    if as_json:
        _json_out(page["tasks"])
        return
    if not page["tasks"]:
        click.echo("no tasks")
        return
    echo(table([(t["id"], t["handler"], t["state"], t["attempts"], t["job_id"],
                 _cut(t["last_error"], 60)) for t in page["tasks"]],
               ["id", "handler", "state", "attempts", "job", "last error"], shade="state"))


@tasks.command("retry")
@click.argument("task_ids", type=int, nargs=-1, metavar="[TASK_ID]...")
@click.option("--all-dead", is_flag=True, help="Every dead task (narrow with --handler, --job).")
@click.option("--handler", help="With --all-dead: only this handler's tasks.")
@click.option("--job", "job_id", help="With --all-dead: only this job's tasks.")
@_json_option
def tasks_retry(task_ids: tuple[int, ...], all_dead: bool, handler: str | None,
                job_id: str | None, as_json: bool) -> None:
    """Run dead tasks again, with fresh attempts: the ones named, or --all-dead.

    Exit status 1 if the one task named is unknown or not dead. Example: pixhook tasks retry
    42, or pixhook tasks retry --all-dead --handler slack"""
    if bool(task_ids) == all_dead:
        raise click.UsageError("name the dead tasks to retry (TASK_ID...) or pass --all-dead")
    if (handler or job_id) and not all_dead:
        raise click.UsageError("--handler and --job narrow --all-dead")
    client = ServiceClient(_settings())
    if len(task_ids) == 1:
        task: dict[str, Any] = client.call("POST", f"/api/tasks/{task_ids[0]}/retry")
        revived = [task]
    else:
        body: dict[str, Any] = ({"all": True, "handler": handler, "job_id": job_id}
                                if all_dead else {"task_ids": list(task_ids)})
        revived = client.call("POST", "/api/tasks/retry",
                              json={k: v for k, v in body.items() if v is not None})["tasks"]
    if as_json:
        _json_out({"retried": len(revived), "tasks": revived})
        return
    for task in revived:
        echo(f"task {task['id']} ({task['handler']}) is {paint(task['state'])} again")
    if len(task_ids) != 1:
        click.echo(f"retried {len(revived)} dead task(s)")


@tasks.command("replay")
@click.argument("task_id", type=int)
@_json_option
def tasks_replay(task_id: int, as_json: bool) -> None:
    """Run a finished task (succeeded or dead) again: one handler for one transition; a
    forward task re-sends its event. Its runs so far stay in its history.

    Exit status 1 if the task is unknown or still pending or running. Example: pixhook tasks
    replay 42"""
    task: dict[str, Any] = ServiceClient(_settings()).call(
        "POST", f"/api/tasks/{task_id}/replay")
    if as_json:
        _json_out(task)
        return
    echo(f"task {task['id']} ({task['handler']}) is {paint(task['state'])}: it runs again")


# -- local commands -----------------------------------------------------------------------


@cli.command()
@click.option("--once", is_flag=True,
              help="Accepted for older scripts: reconcile always runs one pass.")
@_json_option
def reconcile(once: bool, as_json: bool) -> None:
    """Ask the service for one reconciler pass now: it polls PixVerse about the jobs whose
    webhook is overdue (POST /api/reconcile), then this exits. The worker runs such passes
    continuously on its own; this is for "now".

    Example: pixhook reconcile"""
    answer: dict[str, Any] = ServiceClient(_settings()).call("POST", "/api/reconcile")
    if as_json:
        _json_out(answer)
        return
    click.echo(f"polled {answer['polled']} overdue job(s)")


@cli.command()
@_json_option
def balance(as_json: bool) -> None:
    """Show the PixVerse account's credits. Example: pixhook balance"""
    from service.pixverse import PixVerseClient, PixVerseError

    settings = _settings()
    if not settings.pixverse_api_key:
        _fail("PIXVERSE_API_KEY is not set")

    async def fetch() -> Any:
        async with PixVerseClient(settings.pixverse_api_key,
                                  base_url=settings.pixverse_base_url) as pixverse:
            return await pixverse.balance()

    try:
        result = asyncio.run(fetch())
    except PixVerseError as exc:
        _fail(str(exc))
    if as_json:
        _json_out({"monthly": result.credit_monthly, "package": result.credit_package,
                   "total": result.total})
    else:
        click.echo(f"{result.total} credits ({result.credit_monthly} monthly, "
                   f"{result.credit_package} package)")


@cli.command()
@_json_option
def config(as_json: bool) -> None:
    """Show every setting: its value (secrets masked), where it came from, and help.

    Example: pixhook config
    """
    rows = _settings().describe()
    if as_json:
        _json_out(rows)
        return
    click.echo(table([(r["name"], _show(r["value"]), r["source"]) for r in rows],
                     ["setting", "value", "from"]))


def _show(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    return str(value)


def main(argv: Iterable[str] | None = None) -> None:
    cli(args=list(argv) if argv is not None else None)


# Commands in modules of their own register themselves on the group when imported.
from service import cli_listen, cli_prune, cli_workers  # noqa: E402, F401
