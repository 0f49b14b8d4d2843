"""Follow-up chains: ``then=[{"kind": "extend", ...}, {"kind": "sound_effect", ...}]``.

When a job with ``then`` steps succeeds, this handler submits the first step as a new job whose
``source_video_id`` is the finished job's video, and hands it the remaining steps; that job's
own success submits the next one, and so on. Each child carries ``parent_job_id``, the parent's
labels and callback URL.

Exactly one video per step, however often the task runs: the child's ``Ai-trace-id`` is derived
from the parent's trace id and the step's position, so a replayed task finds the child it
already made (``context.submit`` is idempotent on the trace id), and PixVerse itself would answer
a resubmission with the same video.

When a job with steps left fails (failed, moderation failed, rejected, deleted), the chain stops
there: nothing more is submitted, and the job's ``last_error`` says which steps did not run.
"""

from __future__ import annotations

import uuid
from typing import ClassVar, Final

from service.handler_api import (
    VIDEO_INPUT_FIELD,
    BaseHandler,
    HandlerContext,
    Job,
    JobState,
    PermanentError,
    Transition,
)

#: Namespace of derived trace ids (uuid5), fixed forever: changing it would let a replayed
#: follow-up task make a second video.
TRACE_NAMESPACE: Final = uuid.UUID("6f0f3c2e-5d1b-4c43-9b8e-2f2f7a1d9c10")


def step_trace_id(parent_trace_id: str, position: int) -> str:
    """The trace id of the step at ``position`` in a parent's ``then`` list."""
    return str(uuid.uuid5(TRACE_NAMESPACE, f"{parent_trace_id}/then/{position}"))


class FollowUpHandler(BaseHandler):
    """Submits the next step of a chain when a step succeeds; stops the chain when one fails."""

    name: ClassVar[str] = "followup"
    events: ClassVar[frozenset[JobState]] = frozenset({
        JobState.SUCCEEDED, JobState.FAILED, JobState.MODERATION_FAILED, JobState.REJECTED,
        JobState.DELETED,
    })

    def wants(self, job: Job, transition: Transition) -> bool:
        return bool(job.then)

    async def run(self, job: Job, transition: Transition, context: HandlerContext) -> None:
        if transition.to_state is JobState.SUCCEEDED:
            await self._submit_next(job, context)
        else:
            await self._stop_chain(job, transition, context)

    async def _submit_next(self, job: Job, context: HandlerContext) -> None:
        if job.video_id is None:
            raise PermanentError(f"job {job.id} succeeded without a video id to chain from")
        step, rest = job.then[0], job.then[1:]
        child = await context.submit(
            step["kind"], {**step.get("params", {}), VIDEO_INPUT_FIELD: job.video_id},
            trace_id=step_trace_id(job.trace_id, 0), parent_job_id=job.id, then=rest,
            labels=job.labels, callback_url=job.callback_url,
        )
        context.logger.info("job %s: follow-up %s submitted as job %s (%d more after it)",
                            job.id, step["kind"], child.id, len(rest))

    async def _stop_chain(self, job: Job, transition: Transition,
                          context: HandlerContext) -> None:
        current = await context.jobs.get(job.id) or job
        skipped = ", ".join(step["kind"] for step in job.then)
        note = f"chain stopped: {transition.to_state.value}, so {skipped} did not run"
        if current.last_error and note in current.last_error:
            return  # a replayed task; already said
        message = f"{current.last_error}; {note}" if current.last_error else note
        await context.jobs.record_error(job.id, message)
        context.logger.warning("job %s: %s", job.id, note)
