"""Serve ASGI apps with uvicorn on loopback ports: for the demo, tests and benchmarks.

The socket is bound before uvicorn starts, so port 0 yields a free port with no race, and
the base URL is known before the first request. :func:`raise_open_file_limit` is for the
real server (``pixhook serve`` and ``pixhook web``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import uvicorn

#: How long to wait for uvicorn to report it started, in seconds.
STARTUP_TIMEOUT_SECONDS = 10.0
#: The open-file limit to ask for when the hard limit is "unlimited" (which the kernel does
#: not actually grant; Linux caps it at ``fs.nr_open``, macOS at ``kern.maxfilesperproc``).
UNLIMITED_OPEN_FILES_TARGET = 65536


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft limit on open files to its hard limit, and return the
    ``(soft, hard)`` limits then in force (``(-1, -1)`` where there are none to read).

    Every connection holds a file descriptor and the soft limit is often 1024: slow or idle
    clients (each held up to ``PIXHOOK_BODY_TIMEOUT``) plus the database and the worker's
    connections can use them all, and then uvicorn cannot accept anyone, PixVerse included.
    The hard limit is what the administrator allows; raising the soft one to it needs no
    privilege. A refusal leaves the limit as it was.
    """
    try:
        import resource
    except ImportError:  # Windows has no rlimits
        return -1, -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = UNLIMITED_OPEN_FILES_TARGET if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft, hard


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now, for a server whose URL must be known before it starts (its
    public URL goes into its own settings). Another process could take it first; callers on
    loopback in tests and the demo accept that small race."""
    with contextlib.closing(_bind(host, 0)) as sock:
        port: int = sock.getsockname()[1]
        return port


class _Server(uvicorn.Server):
    """uvicorn, minus its signal handling: the caller owns the process's signals (pytest, the
    demo's own Ctrl-C handling), and a test server must not swallow a Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _server(app: Any) -> uvicorn.Server:
    # proxy_headers off: pixhook decides itself whether X-Forwarded-* count
    # (PIXHOOK_TRUST_PROXY_HEADERS, service/dashboard/forwarded.py).
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False,
                            proxy_headers=False)
    return _Server(config)


@contextlib.contextmanager
def background_server(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` from a background thread; yield its base URL (for synchronous code)."""
    sock = _bind(host, port)
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextlib.asynccontextmanager
async def running_server(app: Any, *, host: str = "127.0.0.1",
                         port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` in the running event loop; yield its base URL."""
    sock = _bind(host, port)
    server = _server(app)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("uvicorn did not start")
        await asyncio.sleep(0.01)
    try:
        yield f"http://{host}:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()
