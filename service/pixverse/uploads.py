"""A file to upload, as an httpx multipart part: from a path (streamed, opened and closed
here), bytes or a binary file object; its type and size checked first, so nothing too big or
of the wrong type is sent."""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path
from typing import IO

from service.pixverse.errors import InvalidRequest

Upload = str | os.PathLike[str] | bytes | IO[bytes]


class UploadPart:
    """Context manager giving an httpx file tuple; opens (and closes) a path itself."""

    def __init__(self, source: Upload, filename: str | None, content_type: str | None,
                 allowed: frozenset[str], max_bytes: int, field: str) -> None:
        self._handle: IO[bytes] | None = None
        if isinstance(source, (bytes, bytearray)):
            size: int | None = len(source)
            body: bytes | IO[bytes] = bytes(source)
            name = filename or "upload"
        elif isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise InvalidRequest(field, f"{path} is not a readable file")
            size = path.stat().st_size
            self._handle = body = path.open("rb")
            name = filename or path.name
        else:
            body = source
            size = None
            name = filename or Path(getattr(source, "name", "upload")).name
        mime = content_type or mimetypes.guess_type(name)[0] or ""
        if mime not in allowed:
            self.close()
            raise InvalidRequest(field, f"content type {mime or 'unknown'!r} of {name!r} is not "
                                        "accepted", allowed=tuple(sorted(allowed)), err_code=500032)
        if size is not None and size > max_bytes:
            self.close()
            raise InvalidRequest(field, f"{size} bytes is over the {max_bytes} byte limit",
                                 err_code=500030)
        self.part = (name, body, mime)

    def __enter__(self) -> tuple[str, bytes | IO[bytes], str]:
        return self.part

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
