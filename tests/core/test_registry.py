"""Handler discovery (entry points) and configuration (which handlers run on what)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from service import registry
from service.handler_api import BaseHandler, Handler, HandlerContext, Job, Transition
from service.lifecycle import JobState, Outcome, TransitionSource
from service.registry import HandlerConfigError, HandlerSet
from service.settings import Settings
from service.store.records import Transition as StoreTransition

BUILTINS = {"download", "slack", "followup", "forward"}
#: pixhook's own handlers that run only when PIXHOOK_HANDLERS names them.
OPT_IN = {"discord", "teams", "telegram", "apprise", "publish"}


class Recorder(BaseHandler):
    name: ClassVar[str] = "recorder"
    events: ClassVar[frozenset[JobState]] = frozenset({JobState.SUCCEEDED})

    def wants(self, job: Job, transition: Transition) -> bool:
        return job.labels.get("skip") != "yes"

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        return None


class Misnamed(Recorder):
    name: ClassVar[str] = "other"


class Crashy(Recorder):
    name: ClassVar[str] = "crashy"

    def wants(self, job: Job, transition: Transition) -> bool:
        raise KeyError("bug")


def _job(kind: str = "text_to_video", **labels: str) -> Job:
    now = time.time()
    return Job(id="job_1", kind=kind, state=JobState.SUCCEEDED, params={}, trace_id="t",
               video_id=1, labels=dict(labels), callback_url=None, then=[], parent_job_id=None,
               attempts=1, last_error=None, next_attempt_at=None, next_poll_at=None,
               created_at=now, updated_at=now, state_changed_at=now, last_event_at=now)


def _transition(to_state: JobState = JobState.SUCCEEDED) -> StoreTransition:
    return StoreTransition(id=1, job_id="job_1", from_state=JobState.GENERATING,
                           to_state=to_state, outcome=Outcome.APPLIED,
                           source=TransitionSource.WEBHOOK, reason="", payload=None,
                           delivery_id=None, received_at=0.0, recorded_at=0.0)


def _settings(*names: str, **options: Mapping[str, Any]) -> Settings:
    return Settings(handlers=names, handler_options=dict(options))


AVAILABLE = {"recorder": Recorder, "misnamed": Misnamed, "crashy": Crashy}


def test_builtin_handlers_are_found_through_entry_points() -> None:
    found = registry.discover()
    assert BUILTINS <= set(found)
    for name in BUILTINS:
        handler = registry.load(found[name])(Settings(), {})
        assert isinstance(handler, Handler) and handler.name == name


def test_tests_load_only_pixhooks_own_handlers() -> None:
    assert registry.builtin_only is True
    assert set(registry.discover()) == BUILTINS | OPT_IN


def test_default_settings_enable_the_builtins() -> None:
    handlers = HandlerSet.from_settings(Settings())
    assert set(handlers.names) == BUILTINS


def test_plan_follows_states_kinds_and_wants() -> None:
    handlers = HandlerSet.from_settings(_settings("recorder"), available=AVAILABLE)
    assert handlers.plan(_job(), _transition()) == ["recorder"]
    assert handlers.plan(_job(), _transition(JobState.FAILED)) == []  # not in its events
    assert handlers.plan(_job(skip="yes"), _transition()) == []  # wants() said no

    narrowed = HandlerSet.from_settings(
        _settings("recorder", recorder={"states": "failed,succeeded", "kinds": ["extend"]}),
        available=AVAILABLE)
    assert narrowed.plan(_job("extend"), _transition(JobState.FAILED)) == ["recorder"]
    assert narrowed.plan(_job("text_to_video"), _transition()) == []


def test_options_reach_the_handler_without_the_filters() -> None:
    handlers = HandlerSet.from_settings(
        _settings("recorder", recorder={"states": ["succeeded"], "channel": "#video"}),
        available=AVAILABLE)
    subscription = handlers.get("recorder")
    assert subscription is not None
    assert subscription.options == {"channel": "#video"}
    assert subscription.handler.options == {"channel": "#video"}  # type: ignore[attr-defined]


def test_a_failing_wants_still_queues_the_task(caplog: pytest.LogCaptureFixture) -> None:
    handlers = HandlerSet.from_settings(_settings("crashy"), available=AVAILABLE)
    assert handlers.plan(_job(), _transition()) == ["crashy"]
    assert "wants() failed" in caplog.text


@pytest.mark.parametrize(("settings", "message"), [
    (_settings("nope"), "unknown handlers: nope"),
    (_settings("misnamed"), "built a handler named 'other'"),
    (_settings("recorder", recorder={"states": ["done"]}), "states: unknown done"),
    (_settings("recorder", recorder={"kinds": 3}), "kinds must be a list"),
])
def test_bad_handler_configuration_is_a_clear_error(settings: Settings, message: str) -> None:
    with pytest.raises(HandlerConfigError, match=message):
        HandlerSet.from_settings(settings, available=AVAILABLE)


def test_handler_options_come_from_toml_and_env(tmp_path: Path) -> None:
    toml = tmp_path / "pixhook.toml"
    toml.write_text('handlers = ["recorder"]\n'
                    '[handler.recorder]\nstates = ["succeeded", "failed"]\nchannel = "#a"\n')
    settings = Settings.load({"PIXHOOK_HANDLER_RECORDER_CHANNEL": "#b",
                              "PIXHOOK_HANDLER_RECORDER_KINDS": "extend"}, toml)
    assert settings.handlers == ("recorder",)
    assert settings.handler_options == {
        "recorder": {"states": ["succeeded", "failed"], "channel": "#b", "kinds": "extend"}}
    subscription = HandlerSet.from_settings(settings, available=AVAILABLE).get("recorder")
    assert subscription is not None
    assert subscription.states == {JobState.SUCCEEDED, JobState.FAILED}
    assert subscription.kinds == {"extend"}


def test_no_handlers_plans_nothing() -> None:
    handlers = HandlerSet.from_settings(Settings.load({"PIXHOOK_HANDLERS": ""}))
    assert handlers.names == [] and handlers.plan(_job(), _transition()) == []
