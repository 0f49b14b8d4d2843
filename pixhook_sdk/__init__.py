"""pixhook's Python SDK for apps: submit jobs, wait for them and follow their events.

Only httpx is needed (none of the server's dependencies)::

    from pixhook_sdk import Pixhook

    with Pixhook("http://127.0.0.1:8000", token="...") as pixhook:
        job = pixhook.submit("text_to_video", {"prompt": "a lantern over a lake",
                                               "model": "v6", "duration": 5,
                                               "quality": "540p", "aspect_ratio": "16:9"})
        done = pixhook.wait(job["id"], timeout=600)     # the event stream, not polling
        print(done["state"])
        for event in pixhook.events(after=0, labels={"app": "demo"}):
            print(event.sequence, event.type, event.job_state)

:class:`AsyncPixhook` is the same for asyncio. Events are the versioned documents of
``GET /api/events`` (see pixhook's ``service/events.py``).
"""

from __future__ import annotations

from pixhook_sdk._client import AsyncPixhook, Job, Pixhook
from pixhook_sdk._events import FINAL_STATES, Event
from pixhook_sdk.exceptions import APIError, PixhookError, StreamError

__all__ = ["FINAL_STATES", "APIError", "AsyncPixhook", "Event", "Job", "Pixhook",
           "PixhookError", "StreamError"]
