"""The job lifecycle: internal state names and the one rule that decides every transition.

PixVerse reports a numeric status (``service.pixverse.vocab.VideoStatus``); pixhook translates it
at the edge with :func:`state_from_pixverse` and reasons only in :class:`JobState` names from
there on. The states and the forward order::

    queued ─► submitting ─► generating ─► succeeded ─► deleted
       │          │             ├───────► moderation_failed
       │          │             ├───────► failed
       │          │             └───────► deleted
       └──────────┴──► rejected, or straight to generating / any terminal state

:func:`decide` is pure: given the job's current state and a proposed one, it says whether the
proposal is *applied* (it moves the job forward), a *duplicate* (the job is already there) or
*ignored* (it would move the job backwards, or out of a final state). Every store calls it
inside the transaction that records the proposal, so the rule lives here once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from service.exceptions import ServiceError
from service.pixverse.vocab import VideoStatus


class JobState(enum.StrEnum):
    """Where a job is in its life. The string values are what the store and the API show."""

    #: Accepted by pixhook, waiting for a submission slot.
    QUEUED = "queued"
    #: A submission to PixVerse is in flight (or its answer was lost; the reconciler checks).
    SUBMITTING = "submitting"
    #: PixVerse status 5 (and the undocumented 2 and 3): PixVerse is working on it.
    GENERATING = "generating"
    #: PixVerse status 1.
    SUCCEEDED = "succeeded"
    #: PixVerse status 7: the prompt or the output failed content moderation.
    MODERATION_FAILED = "moderation_failed"
    #: PixVerse status 8.
    FAILED = "failed"
    #: PixVerse status 6: the video was deleted, possibly after it succeeded.
    DELETED = "deleted"
    #: PixVerse refused the submission for good (a non-retryable API error); never reached it.
    REJECTED = "rejected"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


class TransitionSource(enum.StrEnum):
    """Who proposed a transition."""

    SUBMIT = "submit"  # the submission module, from PixVerse's answer to the create call
    WEBHOOK = "webhook"  # a signed webhook from PixVerse
    POLL = "poll"  # the reconciler, from polling PixVerse's status endpoint


class Outcome(enum.StrEnum):
    """What :func:`decide` made of a proposed transition. Every outcome is recorded."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


#: The non-terminal states in forward order. A job only ever moves right along this tuple, or
#: from any of them into a terminal state.
FORWARD_ORDER: Final = (JobState.QUEUED, JobState.SUBMITTING, JobState.GENERATING)

TERMINAL_STATES: Final = frozenset({
    JobState.SUCCEEDED,
    JobState.MODERATION_FAILED,
    JobState.FAILED,
    JobState.DELETED,
    JobState.REJECTED,
})

#: States in which PixVerse owes us news; the reconciler polls jobs stuck in them.
ACTIVE_STATES: Final = frozenset({JobState.SUBMITTING, JobState.GENERATING})

#: States from which a submission can still be refused: once PixVerse has accepted the job
#: (``generating``), a late "rejected" from a retried submit call is stale news.
_REJECTABLE_FROM: Final = frozenset({JobState.QUEUED, JobState.SUBMITTING})

#: The only way out of a terminal state: PixVerse reports status 6 (deleted) for a video that
#: had reached status 1 (succeeded) when the video is removed later, by its owner or by
#: retention. Recording it keeps the job's view of PixVerse honest (the URL no longer works).
_AFTER_TERMINAL: Final = frozenset({(JobState.SUCCEEDED, JobState.DELETED)})
#: The one backwards move: PixVerse answered "not now" (500044, or a local in-flight limit
#: was reached), so nothing was created and the job waits for a slot again. No PixVerse
#: status maps to ``queued``, so no webhook or poll can propose it.
_REQUEUE: Final = frozenset({(JobState.SUBMITTING, JobState.QUEUED)})

_RANK: Final = {
    **{state: rank for rank, state in enumerate(FORWARD_ORDER)},
    **{state: len(FORWARD_ORDER) for state in TERMINAL_STATES},
}

_PIXVERSE_TO_STATE: Final = {
    VideoStatus.SUCCEEDED: JobState.SUCCEEDED,
    VideoStatus.PENDING: JobState.GENERATING,
    VideoStatus.IN_PROGRESS: JobState.GENERATING,
    VideoStatus.GENERATING: JobState.GENERATING,
    VideoStatus.DELETED: JobState.DELETED,
    VideoStatus.MODERATION_FAILED: JobState.MODERATION_FAILED,
    VideoStatus.FAILED: JobState.FAILED,
}


class UnknownStatusError(ServiceError, ValueError):
    """PixVerse reported a status code pixhook does not know; ``code`` holds it."""

    def __init__(self, code: object) -> None:
        self.code = code
        known = ", ".join(str(int(status)) for status in sorted(_PIXVERSE_TO_STATE))
        super().__init__(f"unknown PixVerse status code {code!r} (known: {known})")


def state_from_pixverse(code: int) -> JobState:
    """Translate a PixVerse status code into a :class:`JobState`.

    >>> state_from_pixverse(5)
    <JobState.GENERATING: 'generating'>

    :raises UnknownStatusError: for any code outside ``VideoStatus`` (including booleans, which
        JSON decoding could hand over where an int was expected).
    """
    if isinstance(code, bool) or not isinstance(code, int):
        raise UnknownStatusError(code)
    try:
        return _PIXVERSE_TO_STATE[VideoStatus(code)]
    except ValueError:
        raise UnknownStatusError(code) from None


@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one proposed transition, with a short reason for the history."""

    outcome: Outcome
    reason: str

    @property
    def applied(self) -> bool:
        return self.outcome is Outcome.APPLIED


def decide(current: JobState, proposed: JobState) -> Decision:
    """Decide whether a job in ``current`` may move to ``proposed``.

    * the same state again is a ``duplicate`` (PixVerse retries webhooks; polls repeat news);
    * a terminal state is final (``ignored``), except ``succeeded -> deleted``;
    * ``rejected`` is only reachable before PixVerse accepted the job (queued, submitting);
    * otherwise a move forward is ``applied`` and a move backwards is ``ignored``. Skipping
      states is allowed: a webhook can beat the answer to the submit call.
    """
    if proposed == current:
        return Decision(Outcome.DUPLICATE, f"already {current}")
    if current in TERMINAL_STATES:
        if (current, proposed) in _AFTER_TERMINAL:
            return Decision(Outcome.APPLIED, f"{proposed} after {current}")
        return Decision(Outcome.IGNORED, f"{current} is final")
    if proposed == JobState.REJECTED and current not in _REJECTABLE_FROM:
        return Decision(Outcome.IGNORED, f"PixVerse already accepted the job ({current})")
    if _RANK[proposed] > _RANK[current]:
        return Decision(Outcome.APPLIED, f"{current} -> {proposed}")
    if (current, proposed) in _REQUEUE:
        return Decision(Outcome.APPLIED, "requeued: PixVerse had no free slot")
    return Decision(Outcome.IGNORED, f"{proposed} would move {current} backwards")
