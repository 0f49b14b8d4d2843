"""Events as the SDK gives them, and the server-sent events decoder (no I/O here)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

#: The states a job does not leave on its own (pixhook's ``service.lifecycle``).
FINAL_STATES: Final = frozenset({"succeeded", "moderation_failed", "failed", "deleted",
                                 "rejected"})


@dataclass(frozen=True, slots=True)
class Event:
    """One event of ``GET /api/events``: the CloudEvents-style document, with its fields."""

    #: The position in the stream (resume after it).
    sequence: int
    #: ``"transition:<id>"`` or ``"task_run:<id>"``: the same for the same fact, always.
    id: str
    #: ``io.pixhook.job.transition`` or ``io.pixhook.task.run``.
    type: str
    #: The job id.
    subject: str
    #: RFC 3339, UTC.
    time: str
    data: dict[str, Any]
    #: The whole document as sent.
    document: dict[str, Any]

    @property
    def job_id(self) -> str:
        return self.subject

    @property
    def job_state(self) -> str:
        """The job's state after this event."""
        return str(self.data["job"]["state"])

    @property
    def is_transition(self) -> bool:
        return self.type == "io.pixhook.job.transition"

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Event:
        return cls(sequence=int(document["sequence"]), id=str(document["id"]),
                   type=str(document["type"]), subject=str(document["subject"]),
                   time=str(document["time"]), data=dict(document["data"]), document=document)


class SSEDecoder:
    """Feed it the lines of a ``text/event-stream`` body; it returns each complete event's
    document (comments, ``retry:`` and unnamed fields are skipped)."""

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        if line == "":
            data, self._data = self._data, []
            return Event.from_document(json.loads("\n".join(data))) if data else None
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if name == "data":
            self._data.append(value[1:] if value.startswith(" ") else value)
        return None
