"""What ``/api`` accepts: every rule about request input, in one place.

Input that could not be stored, or stored but never served back, is refused before anything
is committed, as :class:`InputError` (the API answers ``{"error", "field"}``)::

    what                                           status  field
    a body over PIXHOOK_API_MAX_BYTES              413     body    (counted while read)
    a body not whole within PIXHOOK_BODY_TIMEOUT   408     body    (service.bodies)
    not UTF-8 JSON, not an object, NaN/Infinity    422     body
    a string holding NUL, anywhere (keys too)      422     its path, e.g. params.prompt
    a string holding a lone surrogate ("\\ud83d")   422     its path
    a number that is not finite (1e999)            422     its path
    containers nested over MAX_DEPTH               422     the top-level field
    labels, then, callback_url, kind over bounds   422     that field
    callback_url with user:password@               422     callback_url
    a query parameter holding NUL or a surrogate   422     its name
    a path id holding NUL or a surrogate           404     (no row can have that id)
    Idempotency-Key not 1-255 printable ASCII      422     Idempotency-Key
    bulk retry: neither task_ids nor all: true,    422     task_ids
      more than MAX_BULK_IDS ids, a non-integer    422     task_ids

Why: PostgreSQL cannot store NUL in text; no UTF-8 exists for a lone surrogate, so SQLite
kept such a job and every later listing of it failed; JSON has no ``Infinity``; a body nested a
thousand deep exhausts the parser's stack; and a URL's userinfo is a credential that would be
shown and logged wherever the URL is.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, NoReturn
from urllib.parse import urlsplit

from starlette.requests import Request

from service import bodies
from service.exceptions import ServiceError
from service.settings import Settings
from service.store.operator import MAX_BULK_IDS

#: The range of a task id (a 64-bit row id).
_ROW_ID_RANGE: Final = range(-(2**63), 2**63)

#: Containers nested in a body at most, the body itself counted.
MAX_DEPTH: Final = 32
MAX_LABELS: Final = 64
MAX_LABEL_KEY_CHARS: Final = 128
MAX_LABEL_VALUE_CHARS: Final = 1024
#: Follow-up steps in one chain.
MAX_STEPS: Final = 16
MAX_URL_CHARS: Final = 2048
#: Longest ``kind`` (the longest generation kind is far shorter).
MAX_KIND_CHARS: Final = 64
MAX_IDEMPOTENCY_KEY_CHARS: Final = 255
IDEMPOTENCY_HEADER: Final = "Idempotency-Key"


class InputError(ServiceError):
    """A request ``/api`` does not take: the answer's ``status``, a message for people and
    the ``field`` at fault (``None`` when it is nowhere in particular)."""

    def __init__(self, message: str, field: str | None, *, status: int = 422,
                 headers: Mapping[str, str] | None = None) -> None:
        self.field = field
        self.status = status
        self.headers = dict(headers or {})
        super().__init__(message)


# -- strings and JSON ---------------------------------------------------------------------------


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored or served, or ``None`` if it can."""
    if "\x00" in text:
        return "must not contain NUL (\\u0000)"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "must not contain a lone surrogate (\\ud800-\\udfff)"
    return None


def check_text(text: str, field: str, what: str | None = None) -> None:
    """Raise :class:`InputError` naming ``field`` if ``text`` cannot be stored or served."""
    problem = text_problem(text)
    if problem is not None:
        raise InputError(f"{what or field} {problem}", field)


def check_json(value: Any, field: str, *, depth: int, root: str) -> None:
    """Every string (keys included) storable and servable, every number finite, containers
    nested at most :data:`MAX_DEPTH` deep (``depth`` is ``value``'s own). Errors name the
    path (``params.prompt``, ``then[0].kind``), or ``root`` for nesting."""
    if isinstance(value, str):
        check_text(value, field)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InputError(f"{field} must be a finite number", field)
    elif isinstance(value, dict | list):
        if depth > MAX_DEPTH:
            raise InputError(f"{root} is nested too deeply (at most {MAX_DEPTH} levels in "
                             "a body)", root)
        if isinstance(value, list):
            for i, item in enumerate(value):
                check_json(item, f"{field}[{i}]", depth=depth + 1, root=root)
            return
        for key, item in value.items():
            check_text(key, field, f"a key in {field}")
            check_json(item, f"{field}.{key}", depth=depth + 1, root=root)


def _not_json(constant: str) -> NoReturn:
    raise ValueError(f"{constant} is not JSON")


def parse_body(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object whose every value passes :func:`check_json`."""
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_not_json)
    except RecursionError:
        # Nested deeper than the parser's stack: far over MAX_DEPTH.
        raise InputError(f"body is nested too deeply (at most {MAX_DEPTH} levels)",
                         "body") from None
    except ValueError:  # not UTF-8 or not JSON (UnicodeDecodeError is a ValueError)
        raise InputError("body must be a JSON object (UTF-8)", "body") from None
    if not isinstance(body, dict):
        raise InputError("body must be a JSON object", "body")
    for name, value in body.items():
        check_text(name, "body", "a key in the body")
        check_json(value, name, depth=2, root=name)
    return body


async def read_body(request: Request, settings: Settings) -> dict[str, Any]:
    """Read (within the size cap and the deadline) and check a JSON object body."""
    try:
        raw = await bodies.read_body(request, max_bytes=settings.api_max_bytes,
                                     deadline=settings.body_timeout)
    except bodies.BodyTooLargeError as exc:
        raise InputError(f"{exc} (PIXHOOK_API_MAX_BYTES)", "body", status=413) from None
    except bodies.BodyTimeoutError as exc:
        raise InputError(str(exc), "body", status=408, headers=bodies.CLOSE_HEADERS) from None
    except bodies.ClientDisconnectedError as exc:
        raise InputError(str(exc), "body", status=400) from None
    return parse_body(raw)


# -- POST /api/jobs -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job request that passed these rules (the PixVerse contract checks ``params`` and
    ``then`` next, in :class:`service.submission.Submitter`)."""

    kind: str
    params: dict[str, Any]
    callback_url: str | None = None
    then: list[Any] | None = None
    labels: dict[str, str] | None = None


def new_job(body: Mapping[str, Any]) -> NewJob:
    """The job a checked body (:func:`parse_body`) asks for; raises :class:`InputError`."""
    kind, params = body.get("kind"), body.get("params", {})
    if not isinstance(kind, str):
        raise InputError("kind is required", "kind")
    if len(kind) > MAX_KIND_CHARS:
        raise InputError("kind is not a PixVerse generation kind", "kind")
    if not isinstance(params, dict):
        raise InputError("params must be an object", "params")
    then = body.get("then")
    if then is not None and not isinstance(then, list):
        raise InputError("then must be a list of steps", "then")
    if then is not None and len(then) > MAX_STEPS:
        raise InputError(f"then holds at most {MAX_STEPS} steps", "then")
    return NewJob(kind=kind, params=params, callback_url=callback_url(body.get("callback_url")),
                  then=then, labels=labels(body.get("labels")))


def labels(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not (isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items())):
        raise InputError("labels must map strings to strings", "labels")
    if len(value) > MAX_LABELS:
        raise InputError(f"labels holds at most {MAX_LABELS} labels", "labels")
    for key, text in value.items():
        if len(key) > MAX_LABEL_KEY_CHARS:
            raise InputError(f"a label name is at most {MAX_LABEL_KEY_CHARS} characters",
                             "labels")
        if len(text) > MAX_LABEL_VALUE_CHARS:
            raise InputError(f"a label is at most {MAX_LABEL_VALUE_CHARS} characters",
                             f"labels.{key}")
    return value


def callback_url(value: Any) -> str | None:
    """An http(s) URL with a host, without credentials, spaces or control characters."""
    if value is None:
        return None
    name = "callback_url"
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise InputError("callback_url must be an http(s) URL", name)
    if len(value) > MAX_URL_CHARS:
        raise InputError(f"callback_url is at most {MAX_URL_CHARS} characters", name)
    if any(c.isspace() or not c.isprintable() for c in value):
        raise InputError("callback_url must not contain spaces or control characters", name)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not one
    except ValueError as exc:
        raise InputError(f"callback_url is not a valid URL: {exc}", name) from None
    if parts.username is not None or parts.password is not None:
        raise InputError("callback_url must not carry user:password@ (it would be shown "
                         "and logged); put a token in a query parameter or check the "
                         "signature instead", name)
    if not parts.hostname:
        raise InputError("callback_url needs a host", name)
    return value


# -- queries and paths ----------------------------------------------------------------------------


def query_text(query: Mapping[str, str], name: str) -> str | None:
    """A text query parameter (a filter, a cursor), or ``None`` when absent."""
    value = query.get(name)
    if value is not None:
        check_text(value, name)
    return value


def path_id(value: str) -> str | None:
    """A path id that could name a row, or ``None`` (the caller answers 404)."""
    return value if text_problem(value) is None else None


# -- Idempotency-Key -------------------------------------------------------------------------------


def idempotency_key(request: Request) -> str | None:
    """The request's ``Idempotency-Key`` (1-255 printable ASCII characters), or ``None``."""
    given = request.headers.getlist(IDEMPOTENCY_HEADER)
    if not given:
        return None
    key = given[0]
    if len(given) > 1:
        raise InputError(f"send one {IDEMPOTENCY_HEADER}", IDEMPOTENCY_HEADER)
    if not (1 <= len(key) <= MAX_IDEMPOTENCY_KEY_CHARS and all(
            " " <= c <= "~" for c in key)):
        raise InputError(f"{IDEMPOTENCY_HEADER} must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} "
                         "printable ASCII characters", IDEMPOTENCY_HEADER)
    return key


def request_hash(body: Mapping[str, Any]) -> str:
    """SHA-256 of the body's canonical JSON: key order and spacing make no other request."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def caller_id(token: str) -> str:
    """Whose idempotency keys these are: a hash of the bearer token, never the token."""
    return hashlib.sha256(f"pixhook.idempotency:{token}".encode()).hexdigest()


# -- POST /api/tasks/retry ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BulkRetry:
    """Which dead tasks to revive: ``task_ids``, or every one (``None``), narrowed by
    ``handler`` and ``job_id``."""

    task_ids: list[int] | None
    handler: str | None
    job_id: str | None


def bulk_retry(body: Mapping[str, Any]) -> BulkRetry:
    """``{"task_ids": [1, 2]}`` or ``{"all": true}``, each with optional ``handler`` and
    ``job_id``. Saying which is required: an empty body reviving everything would be an
    accident waiting to happen."""
    unknown = sorted(set(body) - {"task_ids", "all", "handler", "job_id"})
    if unknown:
        raise InputError(f"unknown field {unknown[0]!r} (task_ids, all, handler, job_id)",
                         unknown[0])
    ids = body.get("task_ids")
    every = body.get("all", False)
    if not isinstance(every, bool):
        raise InputError("all must be true or false", "all")
    if ids is None and not every:
        raise InputError('name the tasks ("task_ids": [...]) or send "all": true', "task_ids")
    if ids is not None and every:
        raise InputError('send "task_ids" or "all": true, not both', "task_ids")
    if ids is not None:
        if not isinstance(ids, list) or not all(map(_is_row_id, ids)):
            raise InputError("task_ids must be a list of task ids (integers)", "task_ids")
        if len(ids) > MAX_BULK_IDS:
            raise InputError(f"at most {MAX_BULK_IDS} task ids at once", "task_ids")
        ids = [int(i) for i in ids]
    filters: dict[str, str | None] = {}
    for name in ("handler", "job_id"):
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise InputError(f"{name} must be a string", name)
        filters[name] = value
    return BulkRetry(task_ids=ids, handler=filters["handler"], job_id=filters["job_id"])


def _is_row_id(value: Any) -> bool:
    """An integer in a row id's range; JSON's ``3.0`` is the integer 3 too."""
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return value.is_integer() and int(value) in _ROW_ID_RANGE
    return isinstance(value, int) and value in _ROW_ID_RANGE


# -- GET /api/events ------------------------------------------------------------------------------

#: The event types ``?type=`` takes, by their short names.
EVENT_TYPES: Final = {"transition", "task_run"}
LAST_EVENT_ID_HEADER: Final = "Last-Event-ID"


@dataclass(frozen=True)
class EventQuery:
    """What ``GET /api/events`` was asked for. ``after`` is ``None`` when neither
    ``Last-Event-ID`` nor ``?after=`` says where to start (a stream then starts at the end)."""

    after: int | None
    job_id: str | None
    kind: str | None
    state: str | None
    type: str | None
    labels: dict[str, str]


def _position(value: str, field: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) >= 2**63:
        raise InputError(f"{field} must be an event id (a whole number, 0 or more)", field)
    return int(value)


def event_query(request: Request, states: set[str]) -> EventQuery:
    """``?after=&job=&kind=&state=&type=&label=key=value`` (``label`` repeats; each must
    match) and the ``Last-Event-ID`` header, which wins over ``after`` (an ``EventSource``
    reconnecting sends it, with the URL it first used)."""
    query = request.query_params
    header = request.headers.get(LAST_EVENT_ID_HEADER)
    after = query_text(query, "after")
    position = (_position(header.strip(), LAST_EVENT_ID_HEADER) if header and header.strip()
                else None if after is None else _position(after, "after"))
    state = query_text(query, "state")
    if state is not None and state not in states:
        raise InputError(f"unknown state {state!r}", "state")
    kind = query_text(query, "type")
    if kind is not None and kind not in EVENT_TYPES:
        raise InputError(f"type must be one of {', '.join(sorted(EVENT_TYPES))}", "type")
    wanted: dict[str, str] = {}
    for given in query.getlist("label"):
        check_text(given, "label")
        name, equals, value = given.partition("=")
        if not equals or not name:
            raise InputError("label must be key=value", "label")
        wanted[name] = value
    return EventQuery(after=position, job_id=query_text(query, "job"),
                      kind=query_text(query, "kind"), state=state, type=kind, labels=wanted)
