"""``chat``: the course's chat server on the ``websockets`` library.

Endpoints: ``/chat/{room}`` speaks the chat protocol (:mod:`course_ws.chat.protocol`),
``/echo`` echoes, ``GET /`` serves the browser page and ``GET /healthz`` answers ok.

Production choices, each for a reason:

- **Fan-out never waits.** One message to 10,000 members is one loop of
  non-blocking writes (``websockets.broadcast``), not 10,000 awaits: a slow
  client cannot stall the room.
- **A slow client is dropped, not buffered forever.** ``broadcast`` has no
  backpressure; a member with more than 256 KiB unsent is closed with 1013
  (:class:`course_ws.fanout.bounded.BoundedBroadcast`) and may resume with
  ``?since=``. The kernel's send buffer is capped too (:data:`KERNEL_SEND_BUFFER`):
  left alone, Linux lets it grow to megabytes per connection before the server
  even sees a backlog.
- **Compression is off.** Chat messages are small; per-message deflate would
  cost CPU for every member on every message and ~50 KiB of memory per
  connection.
- **Input is validated and rate limited per client address**; a bad message
  gets an ``error`` event and the connection stays open. Binary frames close
  with 1003.

Every one of those decisions but the fan-out is made in :mod:`course_ws.chat`
(admission, the member session, rooms, catch-up, limits, metrics), the same
for every stack; this module only moves events between ``websockets`` and it.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from importlib.resources import files
from weakref import WeakKeyDictionary

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.http11 import Request, Response

from course_ws.chat.admission import Admitted
from course_ws.chat.brokers import Broker, open_broker_for
from course_ws.chat.metrics import ServerMetrics
from course_ws.chat.ratelimit import client_address
from course_ws.chat.service import CannotJoin, ChatService
from course_ws.chat.session import Close, CloseCode, Reply
from course_ws.fanout.bounded import BoundedBroadcast, close_for_certain, send_deadline
from course_ws.options import ServeOptions
from course_ws.servers._websockets_router import (
    Route,
    StartedWebsockets,
    WebsocketsApp,
    start_websockets_app,
    text_response,
)
from course_ws.servers.echo import echo

logger = logging.getLogger("course_ws.servers.chat")

KERNEL_SEND_BUFFER = 64 * 1024
"""SO_SNDBUF for each member (the kernel doubles it): plenty for chat, and a real bound."""

PAGE = files("course_ws") / "static" / "chat.html"


def page() -> Response:
    """The browser chat client."""
    return text_response(200, PAGE.read_text(encoding="utf-8"), "text/html; charset=utf-8")


class ChatServer:
    """The ``websockets`` adapter of :class:`course_ws.chat.service.ChatService`."""

    def __init__(
        self,
        broker: Broker,
        options: ServeOptions,
        observe_publish: Callable[[float], None] | None = None,
    ) -> None:
        self.options = options
        self.observe_publish = observe_publish
        """Called with the seconds from receiving each ``say`` to its last write (a metric)."""
        self.metrics = ServerMetrics()
        self.fanout = BoundedBroadcast(
            on_close=lambda: self.metrics.dropped(CloseCode.TRY_AGAIN_LATER)
        )
        self.service: ChatService[ServerConnection] = ChatService(
            broker, self.fanout, options, self.metrics
        )
        self._admitted: WeakKeyDictionary[ServerConnection, Admitted] = WeakKeyDictionary()

    def address(self, connection: ServerConnection, request: Request) -> str:
        """The client address that per-address limits apply to."""
        peer = connection.remote_address[0] if connection.remote_address else None
        forwarded = request.headers.get("X-Forwarded-For")
        return client_address(peer, forwarded, self.options.trusted_proxy)

    def admit(
        self, connection: ServerConnection, request: Request, params: dict[str, str]
    ) -> Response | None:
        """Admit a chat handshake, or answer it with the service's HTTP refusal."""
        decision = self.service.admit(request.path, self.address(connection, request))
        if isinstance(decision, Admitted):
            self._admitted[connection] = decision
            return None
        return text_response(decision.status, f"{decision.text}\n")

    async def chat(self, websocket: ServerConnection, room: str) -> None:
        """One member of ``room``, from welcome to leave."""
        admitted = self._admitted.pop(websocket)
        sock = websocket.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)
        try:
            async with self.service.member(admitted, websocket, websocket.send) as session:
                async for frame in websocket:
                    received = time.perf_counter()
                    action = await self.service.handle(session, frame)
                    if isinstance(action, Reply):
                        self.fanout((websocket,), action.event)  # never waits for the reader
                    elif isinstance(action, Close):
                        await close_for_certain(websocket, action.code, action.reason)
                        break
                    elif self.observe_publish is not None:
                        self.observe_publish(time.perf_counter() - received)
        except CannotJoin as exc:
            self.metrics.dropped(CloseCode.TRY_AGAIN_LATER)
            await close_for_certain(websocket, CloseCode.TRY_AGAIN_LATER, exc.reason)
        except ConnectionClosedOK:
            pass  # it said goodbye while we were still sending (a long replay, say)
        except ConnectionClosedError as exc:
            logger.info("%s left %s abruptly: %s", admitted.user, room, exc)

    def app(self) -> WebsocketsApp:
        """The routes and pages of this server."""
        return WebsocketsApp(
            routes=(
                Route.at("/echo", echo),
                Route.at("/chat/{room}", self.chat, self.admit),
            ),
            pages={"/": page},
            logger=logger,
            metrics=self.metrics,
        )


async def start(
    options: ServeOptions,
    sock: socket.socket,
    *,
    observe_publish: Callable[[float], None] | None = None,
) -> StartedWebsockets:
    """Serve the chat on ``sock`` with an in-process broker."""
    server = ChatServer(open_broker_for(options), options, observe_publish)
    return await start_websockets_app(
        server.app(),
        options,
        sock,
        cleanup=server.service.aclose,
        compression=None,
        create_connection=send_deadline(options.send_timeout),
    )
