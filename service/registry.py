"""Finding handler plugins and deciding which of them a transition triggers.

Handlers are found through the entry-point group ``pixhook.handlers``; pixhook's own handlers
(``handlers/``) are registered there too, in pyproject.toml, exactly as a third-party package
would register its own. ``PIXHOOK_HANDLERS`` picks which ones run, and each handler's
``[handler.NAME]`` table (or ``PIXHOOK_HANDLER_NAME_OPTION`` variables) narrows it::

    handlers = ["download", "slack", "my_handler"]

    [handler.slack]
    states = ["succeeded", "failed"]      # default: the handler's own ``events``
    kinds = ["text_to_video", "extend"]   # default: every kind
    concurrency = 4                       # runs at once per worker (default: the handler's)
    webhook_url = "..."                   # anything else is an option for the handler

:class:`HandlerSet` is the configured result; its :meth:`HandlerSet.plan` is the store's
:class:`~service.store.TaskPlanner`, bound to the store when the process is wired
(``build_services``) and called inside each transition's transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Final

from service.handler_api import DEFAULT_HANDLER_CONCURRENCY, Handler, HandlerFactory
from service.lifecycle import JobState
from service.settings import Settings, SettingsError
from service.store import Job, Transition

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final = "pixhook.handlers"
#: The distribution whose entry points are pixhook's own handlers.
BUILTIN_DISTRIBUTION: Final = "pixhook"
#: Options every handler understands; the rest are the handler's own.
COMMON_OPTIONS: Final = frozenset({"states", "kinds", "concurrency"})

#: Set by the test suite (``pytest_configure``): load only pixhook's own handlers, never
#: whatever else happens to be installed in the environment.
builtin_only: bool = False


class HandlerConfigError(SettingsError):
    """A handler is unknown, fails to load, or has an unusable option."""


def discover() -> dict[str, metadata.EntryPoint]:
    """Every handler registered under ``pixhook.handlers``, by name, not yet imported (so a
    broken plugin that is not enabled cannot stop pixhook from starting)."""
    found: dict[str, metadata.EntryPoint] = {}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = entry_point.dist.name if entry_point.dist is not None else None
        if builtin_only and dist != BUILTIN_DISTRIBUTION:
            continue
        if entry_point.name in found:
            logger.warning("handler %r is registered twice; keeping %s", entry_point.name,
                           found[entry_point.name].value)
            continue
        found[entry_point.name] = entry_point
    return found


def load(entry_point: metadata.EntryPoint) -> HandlerFactory:
    """Import a handler's factory; raises :class:`HandlerConfigError` if it fails."""
    try:
        factory: HandlerFactory = entry_point.load()
    except Exception as exc:
        raise HandlerConfigError(
            f"handler {entry_point.name!r} ({entry_point.value}) failed to load: {exc}"
        ) from exc
    return factory


def _names(value: Any, option: str, handler: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise HandlerConfigError(f"[handler.{handler}] {option} must be a list of names")


@dataclass(frozen=True)
class Subscription:
    """One enabled handler and what it runs on."""

    handler: Handler
    states: frozenset[JobState]
    #: ``None``: every kind.
    kinds: frozenset[str] | None
    options: Mapping[str, Any]
    #: Most runs of it one worker has under way at once.
    concurrency: int = DEFAULT_HANDLER_CONCURRENCY


class HandlerSet:
    """The handlers that run in this deployment, built from settings."""

    def __init__(self, subscriptions: Iterable[Subscription]) -> None:
        self._subscriptions = {s.handler.name: s for s in subscriptions}

    @classmethod
    def from_settings(cls, settings: Settings,
                      available: Mapping[str, HandlerFactory] | None = None) -> HandlerSet:
        """Build and configure the handlers ``settings.handlers`` names.

        :param available: factories by name (default: :func:`discover`).
        :raises HandlerConfigError: for an unknown name or a bad option.
        """
        if available is None:
            entry_points = discover()
            _check_known(settings.handlers, entry_points)
            factories = {name: load(entry_points[name]) for name in settings.handlers}
        else:
            _check_known(settings.handlers, available)
            factories = dict(available)
        subscriptions = []
        for name in settings.handlers:
            config = dict(settings.handler_options.get(name, {}))
            options = {k: v for k, v in config.items() if k not in COMMON_OPTIONS}
            handler = factories[name](settings, options)
            if handler.name != name:
                raise HandlerConfigError(
                    f"entry point {name!r} built a handler named {handler.name!r}; "
                    "they must match, since tasks are stored under the name"
                )
            subscriptions.append(Subscription(
                handler=handler,
                states=_states(config, handler),
                kinds=frozenset(_names(config["kinds"], "kinds", name))
                if "kinds" in config else None,
                options=options,
                concurrency=_concurrency(config, handler),
            ))
        return cls(subscriptions)

    @property
    def names(self) -> list[str]:
        return list(self._subscriptions)

    def get(self, name: str) -> Subscription | None:
        return self._subscriptions.get(name)

    def plan(self, job: Job, transition: Transition) -> list[str]:
        """The store's task planner: the handlers this applied transition should run (none
        for a cancelled job: PixVerse may still finish it, but nothing follows from it)."""
        if job.cancelled_at is not None:
            return []
        wanted = []
        for name, sub in self._subscriptions.items():
            if transition.to_state not in sub.states:
                continue
            if sub.kinds is not None and job.kind not in sub.kinds:
                continue
            try:
                if not sub.handler.wants(job, transition):
                    continue
            except Exception:
                # A buggy ``wants`` must not block the transition (the webhook would fail and
                # PixVerse would retry forever); queue the task so the failure shows up there.
                logger.exception("handler %s: wants() failed for job %s; queuing anyway",
                                 name, job.id, extra={"action": "plan", "job_id": job.id})
            wanted.append(name)
        return wanted


def _check_known(names: Iterable[str], known: Mapping[str, object]) -> None:
    unknown = [name for name in names if name not in known]
    if unknown:
        raise HandlerConfigError(
            f"PIXHOOK_HANDLERS names unknown handlers: {', '.join(unknown)} "
            f"(installed: {', '.join(sorted(known)) or 'none'})"
        )


def _concurrency(config: Mapping[str, Any], handler: Handler) -> int:
    """``concurrency`` from the handler's config (a TOML integer or a variable's text), else
    the handler's own ``concurrency``, else the default."""
    if "concurrency" in config:
        value, where = config["concurrency"], f"[handler.{handler.name}] concurrency"
    else:
        value = getattr(handler, "concurrency", DEFAULT_HANDLER_CONCURRENCY)
        where = f"handler {handler.name!r}: its concurrency"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise HandlerConfigError(f"{where} must be a whole number of at least 1, not {value!r}")
    return value


def _states(config: Mapping[str, Any], handler: Handler) -> frozenset[JobState]:
    if "states" not in config:
        return frozenset(handler.events)
    names = _names(config["states"], "states", handler.name)
    valid = {state.value for state in JobState}
    bad = [name for name in names if name not in valid]
    if bad:
        raise HandlerConfigError(
            f"[handler.{handler.name}] states: unknown {', '.join(bad)} "
            f"(states are {', '.join(sorted(valid))})"
        )
    return frozenset(JobState(name) for name in names)
