"""uvicorn as its documentation shows it, in the background of a notebook: no course host.

:func:`~course_ws.hosting.background.serve_in_background` serves an ASGI app
through the course's host (:mod:`course_ws.servers._asgi_host`), which closes
WebSockets with 1001 on shutdown and can abort a stalled connection. To show
what uvicorn itself does — the scope it builds, what ``send`` raises, the
**1012** it sends every WebSocket when it shuts down — :func:`serve_with_uvicorn`
runs a bare :class:`uvicorn.Server` instead, in the same kind of background
thread (its log lines go to ``.logs``, not to the notebook's cells), and stops
it the way ``Ctrl+C`` stops ``uvicorn app:app``: ``server.should_exit = True``.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import fields
from typing import Any

import uvicorn

from course_ws.hosting.background import STARTUP_TIMEOUT, BackgroundServer
from course_ws.options import ServeOptions
from course_ws.servers._asgi_host import ASGIApp

STARTUP_POLL = 0.01


class PlainUvicorn:
    """A :class:`uvicorn.Server` serving as a task on the current loop."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None]) -> None:
        self.server = server
        self.task = task

    async def aclose(self) -> None:
        """Stop as on a signal: 1012 to every WebSocket, then the lifespan shutdown."""
        self.server.should_exit = True
        await self.task


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:  # uvicorn exits its process when the app's startup fails
        raise RuntimeError(f"uvicorn could not start (SystemExit {exc.code}): see .logs") from None


async def start_plain_uvicorn(
    app: ASGIApp, options: ServeOptions, sock: socket.socket, **settings: Any
) -> PlainUvicorn:
    """Serve ``app`` on ``sock`` with a bare :class:`uvicorn.Server`; return once it listens.

    Only ``options.ws`` (the WebSocket implementation) and ``options.log_level`` are
    used, and ``options.close_timeout`` bounds uvicorn's graceful shutdown (unbounded
    by default); everything else is uvicorn's default. ``settings`` are extra
    :class:`uvicorn.Config` arguments.
    """
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level=options.log_level,
        ws=options.ws,
        lifespan="auto",
        timeout_graceful_shutdown=max(1, round(options.close_timeout)),
        **settings,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(_serve(server, sock))
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped during startup; see .logs")
        await asyncio.sleep(STARTUP_POLL)
    return PlainUvicorn(server, task)


def serve_with_uvicorn(
    app: ASGIApp, /, *, startup_timeout: float = STARTUP_TIMEOUT, **options: Any
) -> BackgroundServer:
    """Serve the ASGI ``app`` with plain uvicorn on a free 127.0.0.1 port, in a background thread.

    Like :func:`~course_ws.hosting.background.serve_in_background`, but without the
    course's host: ``stop()`` lets uvicorn close every WebSocket with **1012**
    (service restart) before it runs the lifespan shutdown. ``options`` are those of
    :class:`~course_ws.options.ServeOptions`; ``ws="wsproto"`` picks uvicorn's other
    WebSocket implementation.
    """
    known = {field.name for field in fields(ServeOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown option {', '.join(map(repr, unknown))}")
    name = getattr(app, "__name__", type(app).__name__)

    async def start(serve_options: ServeOptions, sock: socket.socket) -> PlainUvicorn:
        return await start_plain_uvicorn(app, serve_options, sock)

    server = BackgroundServer(f"{name} on plain uvicorn", start, ServeOptions(**options))
    return server.start(startup_timeout)
