"""Signed, expiring links to downloaded videos: ``GET /media/{token}``.

A token is the job id signed with itsdangerous (salt ``pixhook.media``, one salt per purpose)
and a timestamp; it is valid for ``PIXHOOK_MEDIA_LINK_TTL`` seconds. Links can be shared (in
Slack, say) without handing out the API token, and they stop working on their own.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Final

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from service.settings import Settings
from service.store import Store

logger = logging.getLogger(__name__)

SALT: Final = "pixhook.media"
ROUTE_PATH: Final = "/media/{token}"
_RANDOM_KEY: Final = secrets.token_urlsafe(32)


def secret_key(settings: Settings) -> str:
    """``PIXHOOK_SECRET_KEY``, or a key made once per process (links die with the process)."""
    return settings.secret_key or _RANDOM_KEY


class MediaLinks:
    """Makes and checks media tokens, and serves the files they name."""

    def __init__(self, settings: Settings, store: Store | None = None) -> None:
        self._settings = settings
        self._store = store
        self._serializer = URLSafeTimedSerializer(secret_key(settings), salt=SALT)

    def token(self, job_id: str) -> str:
        return self._serializer.dumps(job_id)

    def url(self, job_id: str) -> str | None:
        """The absolute link for a job's video, or ``None`` without ``PIXHOOK_PUBLIC_URL``."""
        base = self._settings.public_url.rstrip("/")
        if not base:
            return None
        return f"{base}/media/{self.token(job_id)}"

    def job_id(self, token: str) -> str:
        """The job a token names; raises ``itsdangerous.BadSignature`` (``SignatureExpired``
        when it is too old)."""
        value = self._serializer.loads(token, max_age=int(self._settings.media_link_ttl))
        if not isinstance(value, str):
            raise BadSignature("not a media token")
        return value

    def routes(self) -> list[Route]:
        return [Route(ROUTE_PATH, self.endpoint, methods=["GET", "HEAD"])]

    async def endpoint(self, request: Request) -> Response:
        try:
            job_id = self.job_id(request.path_params["token"])
        except SignatureExpired:
            return PlainTextResponse("this link has expired", status_code=410)
        except BadSignature:
            return PlainTextResponse("not found", status_code=404)
        if self._store is None:
            return PlainTextResponse("not found", status_code=404)
        job = await self._store.get_job(job_id)
        if job is None or job.media_path is None:
            return PlainTextResponse("not found", status_code=404)
        path = Path(job.media_path).resolve()
        media_dir = Path(self._settings.media_dir).resolve()
        # The path came from our own download handler, but a link must never serve anything
        # outside the media directory, whatever ends up in the database.
        if not path.is_relative_to(media_dir) or not path.is_file():
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(path, media_type="video/mp4", filename=path.name,
                            content_disposition_type="inline")
