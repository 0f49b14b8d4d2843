"""The event document: what pixhook says about a job to the world, in one versioned shape.

The event stream (``GET /api/events``), the SDK and the broker sinks all carry the same JSON
document, with the fields of a CloudEvents 1.0 event (structured mode)::

    {
      "specversion": "1.0",                       # CloudEvents' version of the envelope
      "dataversion": 1,                           # pixhook's version of ``data`` (EVENT_VERSION)
      "id": "transition:42",                      # stable: "transition:<id>" | "task_run:<id>"
      "source": "pixhook",                        # the deployment (settable)
      "type": "io.pixhook.job.transition",        # EventType
      "subject": "<job id>",
      "time": "2025-01-01T12:00:00.000000Z",      # RFC 3339, UTC: when it was recorded
      "datacontenttype": "application/json",
      "sequence": 17,                             # the stream position (None off the stream)
      "data": {
        "job": {"id", "kind", "state", "labels"},   # state: the job's state after the event
        "transition": {"id", "from_state", "to_state", "outcome", "source", "reason",
                       "received_at", "recorded_at"}          # for io.pixhook.job.transition
        "task_run": {"id", "task_id", "handler", "attempt", "outcome", "error",
                     "started_at", "finished_at"}             # for io.pixhook.task.run
      }
    }

``id`` names the fact (a transition row, a task run row), so whoever sends the same fact twice
(a retried broker publish, a replayed stream) sends the same id and receivers deduplicate on it.
``sequence`` is the event's place in the stream: a positive integer, increasing in commit order
across both kinds of event and both databases; it is the server-sent event's ``id:`` and what
``Last-Event-ID`` and ``?after=`` resume from. Fields are only ever added to ``data`` within a
``dataversion``; a change that removes or retypes one bumps it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from service.lifecycle import JobState

if TYPE_CHECKING:  # the store imports this module: no cycle at run time
    from service.store.records import Job, TaskRun, Transition

#: CloudEvents' envelope version.
SPEC_VERSION: Final = "1.0"
#: The version of the ``data`` layout described above.
EVENT_VERSION: Final = 1
#: ``source`` when the deployment names none.
DEFAULT_SOURCE: Final = "pixhook"


class EventType(enum.StrEnum):
    """What an event is about."""

    #: A proposed state recorded for a job (applied, duplicate or ignored: see ``outcome``).
    TRANSITION = "io.pixhook.job.transition"
    #: One finished run of a handler task (succeeded, retry or dead: see ``outcome``).
    TASK_RUN = "io.pixhook.task.run"


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One event about a job, before it is rendered as a document."""

    type: EventType
    #: ``"transition:<id>"`` or ``"task_run:<id>"``.
    id: str
    job_id: str
    #: When it was recorded (seconds since the epoch).
    time: float
    data: dict[str, Any]
    #: The stream position, when the event was read from the stream.
    sequence: int | None = field(default=None)


def job_summary(job_id: str, kind: str, state: JobState | str,
                labels: dict[str, str]) -> dict[str, Any]:
    """``data.job``: who the event is about, and the job's state after it."""
    return {"id": job_id, "kind": kind, "state": str(state), "labels": dict(labels)}


def transition_event(job: Job, transition: Transition, *,
                     sequence: int | None = None) -> JobEvent:
    """The event for a transition, given the job as it was after it (what a handler gets)."""
    return JobEvent(
        type=EventType.TRANSITION, id=f"transition:{transition.id}", job_id=job.id,
        time=transition.recorded_at, sequence=sequence,
        data={"job": job_summary(job.id, job.kind, job.state, job.labels),
              "transition": transition_data(transition)})


def transition_data(transition: Transition) -> dict[str, Any]:
    """``data.transition``."""
    return {
        "id": transition.id,
        "from_state": None if transition.from_state is None else str(transition.from_state),
        "to_state": str(transition.to_state), "outcome": str(transition.outcome),
        "source": str(transition.source), "reason": transition.reason,
        "received_at": transition.received_at, "recorded_at": transition.recorded_at,
    }


def task_run_data(run: TaskRun, handler: str) -> dict[str, Any]:
    """``data.task_run``."""
    return {
        "id": run.id, "task_id": run.task_id, "handler": handler, "attempt": run.attempt,
        "outcome": str(run.outcome), "error": run.error, "started_at": run.started_at,
        "finished_at": run.finished_at,
    }


def format_time(seconds: float) -> str:
    """RFC 3339 in UTC with microseconds, as CloudEvents' ``time`` wants."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_document(event: JobEvent, *, source: str = DEFAULT_SOURCE) -> dict[str, Any]:
    """The versioned JSON document for an event (see the module docstring)."""
    return {
        "specversion": SPEC_VERSION, "dataversion": EVENT_VERSION, "id": event.id,
        "source": source, "type": str(event.type), "subject": event.job_id,
        "time": format_time(event.time), "datacontenttype": "application/json",
        "sequence": event.sequence, "data": event.data,
    }
