"""Local stand-ins for Discord, Teams (Workflows) and Telegram (Bot API), checking what they
are sent against each service's public documentation.

Each records the payloads it accepts, answers a payload that breaks a documented rule with the
service's 400 (and keeps the reason in ``problems``), and answers its first request with 429
and ``Retry-After`` (``rate_limit_once``). Serve ``StandIn.app`` with ``running_server``.

Used by the tests and by ``pixhook demo`` (which posts its jobs to the Discord stand-in); point
a handler at one to develop a chat integration without a Discord, Teams or Telegram account.

What is checked, by service:

* **Discord** (developer docs, "Execute Webhook" and "Embed Limits"): a POST to
  ``/api/webhooks/{id}/{token}``; JSON, or multipart with ``payload_json`` and ``files[n]``
  whose ``attachments[].id`` match; ``content`` <= 2000 characters; at most 10 embeds; title
  <= 256, description <= 4096, at most 25 fields, field name <= 256 and value <= 1024, all
  text in the embeds <= 6000; ``url`` http(s); ``color`` an integer 0..0xFFFFFF;
  ``timestamp`` ISO 8601; at least one of content, embeds or files; a body over the upload
  limit is 413. 429 answers carry ``Retry-After`` and a JSON ``retry_after``.
* **Teams Workflows** ("Create incoming webhooks with Workflows", Adaptive Card schema): a JSON
  ``{"type": "message", "attachments": [...]}`` whose attachments have contentType
  ``application/vnd.microsoft.card.adaptive`` and a ``content`` of type ``AdaptiveCard`` with a
  ``version`` and a ``body`` of known element types; ``FactSet`` facts have ``title`` and
  ``value`` strings; ``Action.OpenUrl`` has an http(s) ``url``. Accepted with 202.
* **Telegram** (Bot API, ``sendVideo`` and ``sendMessage``): ``/bot{token}/{method}``;
  ``chat_id`` required; ``video`` a string URL; ``caption`` <= 1024; ``text`` 1..4096; answers
  ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code", "description"}``, 429 with
  ``parameters.retry_after``. ``refuse_videos`` answers ``sendVideo`` as Telegram does a URL it
  cannot fetch (400 "failed to get HTTP URL content").
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

CARD_ELEMENTS = frozenset({"TextBlock", "FactSet", "Image", "ColumnSet", "Container",
                           "RichTextBlock", "ActionSet"})


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(("http://", "https://"))


@dataclasses.dataclass
class StandIn:
    rate_limit_once: bool = True
    refuse_videos: bool = False
    discord_upload_limit: int = 10 * 1024 * 1024
    discord_token: str = "discord-token"
    telegram_token: str = "123:telegram-token"
    #: ``(service, payload)`` accepted, in order; Discord's files as ``{field: (name, size)}``.
    received: list[tuple[str, dict[str, Any]]] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)
    requests: int = 0
    _limited: set[str] = dataclasses.field(default_factory=set)

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/api/webhooks/{id}/{token}", self._discord, methods=["POST"]),
            Route("/workflows/{flow}", self._teams, methods=["POST"]),
            Route("/bot{token}/{method}", self._telegram, methods=["POST"]),
        ])

    def of(self, service: str) -> list[dict[str, Any]]:
        return [payload for name, payload in self.received if name == service]

    def _limit(self, service: str) -> bool:
        self.requests += 1
        if self.rate_limit_once and service not in self._limited:
            self._limited.add(service)
            return True
        return False

    def _refuse(self, problem: str, response: Response) -> Response:
        self.problems.append(problem)
        return response

    # -- Discord ---------------------------------------------------------------------------

    async def _discord(self, request: Request) -> Response:
        if self._limit("discord"):
            return JSONResponse({"message": "You are being rate limited.", "retry_after": 0.5,
                                 "global": False}, status_code=429,
                                headers={"Retry-After": "1"})
        if request.path_params["token"] != self.discord_token:
            return JSONResponse({"message": "Unknown Webhook", "code": 10015}, 404)
        body = await request.body()
        if len(body) > self.discord_upload_limit:
            return self._refuse("discord: body over the upload limit", JSONResponse(
                {"message": "Request entity too large", "code": 40005}, 413))
        files: dict[str, tuple[str, int]] = {}
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            async with request.form(max_part_size=self.discord_upload_limit) as form:
                payload = json.loads(str(form["payload_json"]))
                for key, value in form.multi_items():
                    if key.startswith("files[") and not isinstance(value, str):
                        files[key] = (value.filename or "", len(await value.read()))
        else:
            payload = json.loads(body)
        problems = self._discord_problems(payload, files)
        if problems:
            return self._refuse("discord: " + "; ".join(problems), JSONResponse(
                {"message": "Invalid Form Body", "code": 50035, "errors": problems}, 400))
        if request.query_params.get("wait") != "true":
            self.problems.append("discord: no wait=true")
        self.received.append(("discord", {**payload, "_files": files}))
        return JSONResponse({"id": "1", "type": 0, "content": payload.get("content", "")})

    @staticmethod
    def _discord_problems(payload: dict[str, Any], files: dict[str, Any]) -> list[str]:
        problems = []
        if not (payload.get("content") or payload.get("embeds") or files):
            problems.append("no content, embeds or files")
        if len(payload.get("content") or "") > 2000:
            problems.append("content over 2000")
        embeds = payload.get("embeds") or []
        if len(embeds) > 10:
            problems.append("over 10 embeds")
        total = 0
        for embed in embeds:
            for key, limit in (("title", 256), ("description", 4096)):
                text = embed.get(key) or ""
                total += len(text)
                if not isinstance(text, str) or len(text) > limit:
                    problems.append(f"embed {key} over {limit}")
            fields = embed.get("fields") or []
            if len(fields) > 25:
                problems.append("over 25 fields")
            for field in fields:
                name, value = field.get("name"), field.get("value")
                if not (isinstance(name, str) and 0 < len(name) <= 256):
                    problems.append(f"field name {name!r}")
                if not (isinstance(value, str) and 0 < len(value) <= 1024):
                    problems.append(f"field value {value!r}")
                total += len(name or "") + len(value or "")
            if "url" in embed and not _is_url(embed["url"]):
                problems.append("embed url not http(s)")
            colour = embed.get("color", 0)
            if not (isinstance(colour, int) and 0 <= colour <= 0xFFFFFF):
                problems.append("bad color")
            if "timestamp" in embed:
                try:
                    datetime.fromisoformat(embed["timestamp"])
                except ValueError:
                    problems.append("timestamp not ISO 8601")
        if total > 6000:
            problems.append("embeds over 6000 characters")
        ids = {f"files[{item['id']}]" for item in payload.get("attachments") or []}
        if files and ids != set(files):
            problems.append(f"attachments {sorted(ids)} do not match files {sorted(files)}")
        return problems

    # -- Teams -----------------------------------------------------------------------------

    async def _teams(self, request: Request) -> Response:
        if self._limit("teams"):
            return Response("Too many requests", 429, headers={"Retry-After": "1"})
        payload = await request.json()
        problems = []
        if payload.get("type") != "message":
            problems.append("type is not message")
        attachments = payload.get("attachments")
        if not isinstance(attachments, list) or not attachments:
            problems.append("no attachments")
        for attachment in attachments or []:
            if attachment.get("contentType") != "application/vnd.microsoft.card.adaptive":
                problems.append("contentType")
            card = attachment.get("content") or {}
            if card.get("type") != "AdaptiveCard" or not card.get("version"):
                problems.append("not an AdaptiveCard with a version")
            for element in card.get("body") or []:
                if element.get("type") not in CARD_ELEMENTS:
                    problems.append(f"unknown element {element.get('type')}")
                if element.get("type") == "TextBlock" and not isinstance(element.get("text"),
                                                                         str):
                    problems.append("TextBlock without text")
                for fact in element.get("facts") or []:
                    if not (isinstance(fact.get("title"), str)
                            and isinstance(fact.get("value"), str)):
                        problems.append(f"fact {fact}")
            for action in card.get("actions") or []:
                if action.get("type") == "Action.OpenUrl" and not _is_url(action.get("url")):
                    problems.append("Action.OpenUrl url")
        if problems:
            return self._refuse("teams: " + "; ".join(problems),
                                JSONResponse({"error": {"message": problems}}, 400))
        self.received.append(("teams", payload))
        return Response(status_code=202)

    # -- Telegram --------------------------------------------------------------------------

    async def _telegram(self, request: Request) -> Response:
        if self._limit("telegram"):
            return JSONResponse({"ok": False, "error_code": 429,
                                 "description": "Too Many Requests: retry after 1",
                                 "parameters": {"retry_after": 1}}, 429,
                                headers={"Retry-After": "1"})
        if request.path_params["token"] != self.telegram_token:
            return JSONResponse({"ok": False, "error_code": 401,
                                 "description": "Unauthorized"}, 401)
        method, payload = request.path_params["method"], await request.json()
        problems = []
        if "chat_id" not in payload:
            problems.append("chat_id is required")
        if method == "sendVideo":
            if not isinstance(payload.get("video"), str) or not payload["video"]:
                problems.append("video must be a file_id or URL string")
            if len(payload.get("caption") or "") > 1024:
                problems.append("caption over 1024")
        elif method == "sendMessage":
            if not 1 <= len(payload.get("text") or "") <= 4096:
                problems.append("text must be 1-4096 characters")
        else:
            return JSONResponse({"ok": False, "error_code": 404, "description": "Not Found"},
                                404)
        if problems:
            return self._refuse(f"telegram {method}: " + "; ".join(problems), JSONResponse(
                {"ok": False, "error_code": 400, "description": "Bad Request: " + problems[0]},
                400))
        if method == "sendVideo" and self.refuse_videos:
            return JSONResponse({"ok": False, "error_code": 400,
                                 "description": "Bad Request: failed to get HTTP URL content"},
                                400)
        self.received.append(("telegram", {"method": method, **payload}))
        return JSONResponse({"ok": True, "result": {"message_id": len(self.received),
                                                    "chat": {"id": payload["chat_id"]}}})
