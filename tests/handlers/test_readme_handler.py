"""The third-party handler in the README works as printed (docs stay honest)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from service.handler_api import Handler, PermanentError, Retry
from tests.handlers.conftest import Harness
from tests.support.servers import running_server

README = Path(__file__).resolve().parents[2] / "README.md"


def _readme_handler() -> type[Any]:
    text = README.read_text()
    section = text[text.index("### Writing a handler"):]
    code = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert code is not None, "the README lost its handler example"
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "README.md", "exec"), namespace)  # noqa: S102 - our own docs
    handler: type[Any] = namespace["RenderFarmHandler"]
    return handler


class Farm:
    def __init__(self) -> None:
        self.answers: list[int] = []
        self.received: list[tuple[dict[str, Any], str]] = []
        self.app = Starlette(routes=[Route("/jobs", self.jobs, methods=["POST"])])

    async def jobs(self, request: Request) -> JSONResponse:
        status = self.answers.pop(0) if self.answers else 202
        if status == 202:
            self.received.append((await request.json(), request.headers["idempotency-key"]))
        return JSONResponse({}, status_code=status, headers={"retry-after": "12"})


async def test_the_readme_handler_runs(harness: Harness) -> None:
    farm = Farm()
    handler_class = _readme_handler()
    async with running_server(farm.app) as base:
        handler = handler_class(harness.settings, {"endpoint": f"{base}/jobs"})
        assert isinstance(handler, Handler) and handler.name == "render_farm"
        job, transition, task = await harness.transition(
            "render_farm", payload={"url": "https://media.pixverse.ai/v.mp4"},
            labels={"farm": "yes"})
        assert handler.wants(job, transition)
        context = harness.context(task, options=handler.options)

        farm.answers = [429]
        with pytest.raises(Retry) as retry:
            await handler.run(job, transition, context)
        assert retry.value.after == 12
        farm.answers = [404]
        with pytest.raises(PermanentError):
            await handler.run(job, transition, context)
        await handler.run(job, transition, context)
    assert farm.received == [({"job": job.id, "video": "https://media.pixverse.ai/v.mp4"},
                              task.idempotency_key)]
