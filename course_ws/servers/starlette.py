"""``starlette``: the course's chat on Starlette 1.x, on uvicorn.

The same endpoints and protocol as every chat server: ``/chat/{room}`` and
``/echo`` (``WebSocketRoute``), ``GET /``, ``GET /healthz`` and ``GET /metrics``
(``Route``), and ``POST /rooms/{room}/messages`` to say a message into a room
over HTTP. The endpoints are :class:`~course_ws.servers._starlette_chat.StarletteChat`'s,
shared with the ``fastapi`` server; the chat itself is
:class:`~course_ws.chat.service.ChatService`, as in the raw ``asgi`` server.

What Starlette 1.x looks like, and what it no longer accepts:

- routes are declared up front (``routes=[Route(...), WebSocketRoute(...)]``);
  the ``@app.route``/``@app.websocket_route`` decorators, ``on_startup``,
  ``on_shutdown`` and ``on_event`` are gone: start-up and shutdown are one
  ``lifespan`` context manager (here: close the chat service at shutdown);
- ``exception_handlers=`` answers ``HTTPException`` (404, 405) in plain text,
  over HTTP and, before accept, as a WebSocket's HTTP refusal;
- a chat handshake the service refuses gets its status (400, 404, 429) through
  ``websocket.send_denial_response(response)``, never an accept-then-close.

The rest is the raw ASGI server's: a bounded outbox per member (fan-out never
waits), the welcome and replay sent directly, 1001 at shutdown from the
course's uvicorn host, compression off, ``--max-size`` as ``ws_max_size``.
Run it with ``course-ws serve starlette``, or
``uvicorn course_ws.servers.starlette:create_app --factory`` (without the 1001).
"""

from __future__ import annotations

import socket

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from course_ws.chat.brokers import Broker
from course_ws.options import ServeOptions
from course_ws.servers._asgi_chat import start_chat_app
from course_ws.servers._asgi_host import StartedUvicorn
from course_ws.servers._starlette_chat import StarletteChat


def create_app(options: ServeOptions | None = None, broker: Broker | None = None) -> Starlette:
    """The Starlette application, for any ASGI server."""
    chat = StarletteChat(options or ServeOptions(), broker)
    app = Starlette(
        routes=[
            WebSocketRoute("/echo", chat.echo),
            WebSocketRoute("/chat/{room}", chat.chat),
            WebSocketRoute("/{path:path}", chat.no_endpoint),
            Route("/", chat.page),
            Route("/healthz", chat.healthz),
            Route("/metrics", chat.prometheus),
            Route("/echo", chat.upgrade_required),
            Route("/chat/{room}", chat.upgrade_required),
            Route("/rooms/{room}/messages", chat.post, methods=["POST"]),
        ],
        middleware=chat.middleware,
        exception_handlers=chat.exception_handlers,
        lifespan=chat.lifespan,
    )
    app.state.chat = chat
    return app


async def start(options: ServeOptions, sock: socket.socket) -> StartedUvicorn:
    """Serve the chat on ``sock`` with uvicorn, through the course's ASGI host."""
    app = create_app(options)
    return await start_chat_app(app, options, sock, app.state.chat.metrics)
