"""Serving any ASGI application with uvicorn on a socket we bound ourselves."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

from course_ws.options import ServeOptions

STARTUP_POLL = 0.01


class StartedUvicorn:
    """A started uvicorn server running as a task on the current loop.

    uvicorn closes open WebSockets with 1012 (service restart) when it shuts
    down. Catalogue apps that must say 1001 close their own sockets first, in
    their lifespan or in a subclass of this class.
    """

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None]) -> None:
        self.server = server
        self.task = task

    async def aclose(self) -> None:
        """Ask uvicorn to exit and wait until it has closed every connection."""
        self.server.should_exit = True
        await self.task


async def start_asgi_app(
    app: Any, options: ServeOptions, sock: socket.socket, **settings: Any
) -> StartedUvicorn:
    """Serve the ASGI ``app`` on ``sock`` and return once uvicorn accepts connections.

    ``settings`` are extra :class:`uvicorn.Config` arguments. A failure during
    startup (a lifespan error, say) is raised here instead of being logged.
    """
    config = uvicorn.Config(
        app,
        log_config=None,
        log_level=options.log_level,
        ws="websockets-sansio",
        ws_max_size=options.max_size,
        ws_ping_interval=options.ping_interval,
        ws_ping_timeout=options.ping_timeout,
        lifespan="auto",
        timeout_graceful_shutdown=5,
        **settings,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # raises what stopped uvicorn
            raise RuntimeError("uvicorn stopped during startup; see the server log")
        await asyncio.sleep(STARTUP_POLL)
    return StartedUvicorn(server, task)
