"""``echo``: the smallest useful WebSocket server, on the ``websockets`` library.

``/echo`` sends every message back unchanged: text as text, binary as binary.
``GET /healthz`` answers ``200 ok``; any other path is a 404 before the handshake.

A client that sends but never reads would keep the handler waiting in ``send``
forever, holding its buffers: in ``websockets`` 17 neither keepalive nor
``close()`` ends it, as both wait behind the unread bytes. So a client whose
replies stay blocked for ``--send-timeout`` seconds is closed with 1013, and
its TCP connection aborted if the close handshake has not finished within
``--close-timeout`` (:func:`course_ws.fanout.bounded.send_deadline`). The
deadline is kept by the connection, not by a timeout around each ``send``,
which would cost every message: ``course-ws bench echo`` compares the server
with a ten-line ``websockets`` echo.
"""

from __future__ import annotations

import logging
import socket

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK

from course_ws.fanout.bounded import send_deadline
from course_ws.options import ServeOptions
from course_ws.servers._websockets_router import (
    Route,
    StartedWebsockets,
    WebsocketsApp,
    start_websockets_app,
)

logger = logging.getLogger("course_ws.servers.echo")


async def echo(websocket: ServerConnection) -> None:
    """Send every message back as it came, until the client closes.

    ``async for`` ends quietly on a clean close (1000/1001), but ``send`` raises
    ``ConnectionClosedOK`` if the client closed politely after its last message:
    that is a normal ending too. A client that vanishes without a close frame
    raises ``ConnectionClosedError``: on the internet that is routine, not a server
    error, so it is logged in one line instead of a traceback.
    """
    try:
        async for message in websocket:
            await websocket.send(message)
    except ConnectionClosedOK:
        pass
    except ConnectionClosedError as exc:
        logger.info("echo client %s left abruptly: %s", websocket.remote_address, exc)


NOT_READING = "too slow: you send, but do not read the replies"
"""The reason sent with 1013 to a client whose replies stayed blocked for the send timeout."""


async def start(options: ServeOptions, sock: socket.socket) -> StartedWebsockets:
    """Serve ``/echo`` on ``sock``, closing clients that do not read their replies."""
    app = WebsocketsApp(routes=(Route.at("/echo", echo),), pages={}, logger=logger)
    return await start_websockets_app(
        app,
        options,
        sock,
        create_connection=send_deadline(options.send_timeout, NOT_READING),
    )
