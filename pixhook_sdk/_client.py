"""The clients: :class:`AsyncPixhook` and its blocking twin :class:`Pixhook`.

Both speak to pixhook's ``/api`` with httpx and share everything that is not I/O (requests,
answers, the stream's resume position). A stream reconnects on its own after a dropped
connection or a service restart, sending ``Last-Event-ID``, so an iteration misses no event
and sees none twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Self

import httpx

from pixhook_sdk._events import FINAL_STATES, Event, SSEDecoder
from pixhook_sdk.exceptions import APIError, StreamError

#: Tries of one submit on a dropped connection or a 5xx (same Idempotency-Key each time).
SUBMIT_ATTEMPTS: Final = 4
#: The wait before reconnecting a stream grows from this to :data:`MAX_RECONNECT_SECONDS`.
RECONNECT_SECONDS: Final = 0.25
MAX_RECONNECT_SECONDS: Final = 5.0
DEFAULT_TIMEOUT_SECONDS: Final = 30.0

Job = dict[str, Any]


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _job_body(kind: str, params: Mapping[str, Any], labels: Mapping[str, str] | None,
              callback_url: str | None, then: Sequence[Mapping[str, Any]] | None) -> Job:
    body: Job = {"kind": kind, "params": dict(params)}
    if labels:
        body["labels"] = dict(labels)
    if callback_url:
        body["callback_url"] = callback_url
    if then:
        body["then"] = [dict(step) for step in then]
    return body


def _answer(response: httpx.Response) -> Job:
    """The JSON of a 2xx answer; :class:`APIError` for anything else."""
    if response.is_success:
        result: Job = response.json()
        return result
    try:
        error = response.json()
        message, field = str(error.get("error", response.text)), error.get("field")
    except ValueError:
        message, field = response.text or response.reason_phrase, None
    raise APIError(response.status_code, message, field)


def _retryable(response: httpx.Response) -> bool:
    return response.status_code >= 500


class _Stream:
    """Where a stream is, and what to ask for when (re)opening it."""

    def __init__(self, *, after: int | None, job: str | None, kind: str | None,
                 state: str | None, type: str | None,  # noqa: A002 -- the API's word
                 labels: Mapping[str, str] | None) -> None:
        self.last: int | None = after
        self.params: list[tuple[str, str]] = [
            (name, value) for name, value in (("job", job), ("kind", kind), ("state", state),
                                              ("type", type)) if value is not None]
        self.params += [("label", f"{key}={value}") for key, value in (labels or {}).items()]
        self.delay = RECONNECT_SECONDS

    def request(self, token: str) -> tuple[dict[str, str], httpx.QueryParams]:
        headers = {**_headers(token), "Accept": "text/event-stream"}
        if self.last is not None:
            headers["Last-Event-ID"] = str(self.last)
        return headers, httpx.QueryParams(tuple(self.params))

    def opened(self, response: httpx.Response) -> None:
        """Check the answer (its body already read when it is not a stream)."""
        if response.status_code != 200:
            raise StreamError(str(APIError(response.status_code, response.text)))
        self.delay = RECONNECT_SECONDS

    def received(self, event: Event) -> Event:
        self.last = event.sequence
        return event

    def backoff(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, MAX_RECONNECT_SECONDS)
        return delay


class AsyncPixhook:
    """An asyncio client for one pixhook service::

        async with AsyncPixhook("http://127.0.0.1:8000", token) as pixhook:
            job = await pixhook.submit("text_to_video", {"prompt": "a cat", ...})
            job = await pixhook.wait(job["id"])

    ``transport`` is httpx's (tests may pass one).
    """

    def __init__(self, base_url: str, token: str, *,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._token = token
        # No read timeout on streams: heartbeats keep them alive, and they end on their own.
        self._http = httpx.AsyncClient(base_url=base_url.rstrip("/"), timeout=timeout,
                                       transport=transport)

    async def submit(self, kind: str, params: Mapping[str, Any], *,
                     labels: Mapping[str, str] | None = None, callback_url: str | None = None,
                     then: Sequence[Mapping[str, Any]] | None = None,
                     idempotency_key: str | None = None) -> Job:
        """Submit a job; returns it as ``POST /api/jobs`` answered. A dropped connection or
        a 5xx is retried with the same ``Idempotency-Key`` (a fresh UUID unless given), so
        retries never make a second job."""
        key = idempotency_key or str(uuid.uuid4())
        body = _job_body(kind, params, labels, callback_url, then)
        headers = {**_headers(self._token), "Idempotency-Key": key}
        for attempt in range(1, SUBMIT_ATTEMPTS + 1):
            try:
                response = await self._http.post("/api/jobs", json=body, headers=headers)
            except httpx.TransportError:
                if attempt == SUBMIT_ATTEMPTS:
                    raise
            else:
                if not _retryable(response) or attempt == SUBMIT_ATTEMPTS:
                    return _answer(response)
            await asyncio.sleep(RECONNECT_SECONDS * attempt)
        raise AssertionError("unreachable")

    async def get_job(self, job_id: str) -> Job:
        """``GET /api/jobs/{id}``: the job with its transitions and tasks."""
        return _answer(await self._http.get(f"/api/jobs/{job_id}",
                                            headers=_headers(self._token)))

    async def events(self, *, after: int | None = None, job: str | None = None,
                     kind: str | None = None, state: str | None = None,
                     type: str | None = None,  # noqa: A002 -- the API's word
                     labels: Mapping[str, str] | None = None) -> AsyncIterator[Event]:
        """Events as they happen (after ``after``; by default only new ones), forever,
        reconnecting as needed. Filters as ``GET /api/events``."""
        stream = _Stream(after=after, job=job, kind=kind, state=state, type=type,
                         labels=labels)
        while True:
            headers, params = stream.request(self._token)
            try:
                async with self._http.stream("GET", "/api/events", headers=headers,
                                             params=params,
                                             timeout=httpx.Timeout(10.0, read=None)) as response:
                    if response.status_code != 200:
                        await response.aread()
                    stream.opened(response)
                    decoder = SSEDecoder()
                    async for line in response.aiter_lines():
                        event = decoder.feed(line)
                        if event is not None:
                            yield stream.received(event)
            except httpx.TransportError:
                await asyncio.sleep(stream.backoff())

    async def wait(self, job_id: str, *, timeout: float | None = None) -> Job:
        """Wait until a job is final (succeeded, failed, ...) through the event stream, and
        return it as ``GET /api/jobs/{id}`` shows it. Raises ``TimeoutError``."""
        async with asyncio.timeout(timeout):
            async for event in self.events(after=0, job=job_id, type="transition"):
                if event.job_state in FINAL_STATES:
                    break
        return await self.get_job(job_id)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self.aclose()


class Pixhook:
    """The blocking twin of :class:`AsyncPixhook` (same methods, same behaviour)."""

    def __init__(self, base_url: str, token: str, *,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._token = token
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout,
                                  transport=transport)

    def submit(self, kind: str, params: Mapping[str, Any], *,
               labels: Mapping[str, str] | None = None, callback_url: str | None = None,
               then: Sequence[Mapping[str, Any]] | None = None,
               idempotency_key: str | None = None) -> Job:
        """See :meth:`AsyncPixhook.submit`."""
        key = idempotency_key or str(uuid.uuid4())
        body = _job_body(kind, params, labels, callback_url, then)
        headers = {**_headers(self._token), "Idempotency-Key": key}
        for attempt in range(1, SUBMIT_ATTEMPTS + 1):
            try:
                response = self._http.post("/api/jobs", json=body, headers=headers)
            except httpx.TransportError:
                if attempt == SUBMIT_ATTEMPTS:
                    raise
            else:
                if not _retryable(response) or attempt == SUBMIT_ATTEMPTS:
                    return _answer(response)
            time.sleep(RECONNECT_SECONDS * attempt)
        raise AssertionError("unreachable")

    def get_job(self, job_id: str) -> Job:
        """See :meth:`AsyncPixhook.get_job`."""
        return _answer(self._http.get(f"/api/jobs/{job_id}", headers=_headers(self._token)))

    def events(self, *, after: int | None = None, job: str | None = None,
               kind: str | None = None, state: str | None = None,
               type: str | None = None,  # noqa: A002 -- the API's word
               labels: Mapping[str, str] | None = None,
               timeout: float | None = None) -> Iterator[Event]:
        """See :meth:`AsyncPixhook.events`; with ``timeout``, ``TimeoutError`` after that
        many seconds (a blocking read has no other way out)."""
        stream = _Stream(after=after, job=job, kind=kind, state=state, type=type,
                         labels=labels)
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> float | None:
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no matching event within {timeout} s")
            return left

        while True:
            headers, params = stream.request(self._token)
            try:
                with self._http.stream("GET", "/api/events", headers=headers, params=params,
                                       timeout=httpx.Timeout(10.0, read=remaining())
                                       ) as response:
                    if response.status_code != 200:
                        response.read()
                    stream.opened(response)
                    decoder = SSEDecoder()
                    for line in response.iter_lines():
                        remaining()
                        event = decoder.feed(line)
                        if event is not None:
                            yield stream.received(event)
            except httpx.TransportError:
                time.sleep(min(stream.backoff(), remaining() or MAX_RECONNECT_SECONDS))

    def wait(self, job_id: str, *, timeout: float | None = None) -> Job:
        """See :meth:`AsyncPixhook.wait`."""
        for event in self.events(after=0, job=job_id, type="transition", timeout=timeout):
            if event.job_state in FINAL_STATES:
                break
        return self.get_job(job_id)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
