"""Bare echo apps, one per ASGI stack: the baseline the course's ASGI servers are measured against.

Each is what a tutorial writes for that stack, and nothing more: accept, then
send every text message back. No request checks, no limits of its own, no
send deadline, no metrics, no host that closes with 1001 at shutdown:

* :func:`asgi_echo` — the ASGI 3 websocket events by hand;
* :data:`starlette_echo` — one Starlette ``WebSocketRoute``;
* :data:`fastapi_echo` — one FastAPI ``@app.websocket``.

``python -m course_ws.bench.bare STACK --ws IMPLEMENTATION`` serves one of them
on plain uvicorn (its own protocol classes, not the course's host) with the
settings the course's servers give uvicorn: compression off, the course's
``max_size`` and keepalive, warnings only, on ``asyncio.run``'s event loop as
``course-ws serve`` does. It prints ``listening on 127.0.0.1:PORT`` once ready
and stops on SIGINT. :mod:`course_ws.bench.asgi` starts it, and its course
counterpart, in the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi import WebSocket as FastAPIWebSocket
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from course_ws.hosting.listening import bind_listener, socket_address
from course_ws.options import WS_IMPLEMENTATIONS, ServeOptions

__all__ = ["APPS", "asgi_echo", "fastapi_echo", "serve", "starlette_echo"]


async def asgi_echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A raw ASGI 3 echo: accept, then send every message back until the disconnect."""
    if scope["type"] != "websocket":
        return  # no HTTP, no lifespan: uvicorn says it does not support lifespan, at info level
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})


async def _starlette_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():  # ends quietly on WebSocketDisconnect
        await websocket.send_text(text)


starlette_echo = Starlette(routes=[WebSocketRoute("/echo", _starlette_echo)])
"""A Starlette 1.x echo: one ``WebSocketRoute``."""

fastapi_echo = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
"""A FastAPI echo: one ``@app.websocket`` endpoint."""


@fastapi_echo.websocket("/echo")
async def _fastapi_echo(websocket: FastAPIWebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)


APPS: dict[str, Any] = {"asgi": asgi_echo, "starlette": starlette_echo, "fastapi": fastapi_echo}
"""Each bare app by the name of the course server it is the baseline of."""


async def serve(stack: str, ws: str, options: ServeOptions) -> None:
    """Serve ``APPS[stack]`` on plain uvicorn with ``ws``, as the course's host configures it."""
    sock = bind_listener(options.host, options.port)
    config = uvicorn.Config(
        APPS[stack],
        log_config=None,
        log_level=options.log_level,
        ws=ws,
        ws_max_size=options.max_size,
        ws_ping_interval=options.ping_interval,
        ws_ping_timeout=options.ping_timeout,
        ws_per_message_deflate=False,
    )
    server = uvicorn.Server(config)
    host, port = socket_address(sock)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # raises what stopped uvicorn
            raise RuntimeError("uvicorn stopped during startup")
        await asyncio.sleep(0.01)
    print(f"bare {stack} echo listening on {host}:{port}", flush=True)
    await task


def main() -> None:
    """``python -m course_ws.bench.bare STACK --ws IMPLEMENTATION``: serve until Ctrl+C."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("stack", choices=APPS)
    parser.add_argument("--ws", choices=WS_IMPLEMENTATIONS, default=WS_IMPLEMENTATIONS[0])
    args = parser.parse_args()
    # uvicorn shuts down gracefully on SIGINT, then raises it again for the caller
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.stack, args.ws, ServeOptions()))


if __name__ == "__main__":
    main()
