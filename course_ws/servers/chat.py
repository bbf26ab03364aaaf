"""``chat``: the course's chat server on the ``websockets`` library.

Endpoints: ``/chat/{room}`` speaks the chat protocol (:mod:`course_ws.chat.protocol`),
``/echo`` echoes, ``GET /`` serves the browser page and ``GET /healthz`` answers ok.

Production choices, each for a reason:

- **Fan-out never waits.** One message to 10,000 members is one loop of
  non-blocking writes (``websockets.broadcast``), not 10,000 awaits: a slow
  client cannot stall the room.
- **A slow client is dropped, not buffered forever.** ``broadcast`` has no
  backpressure; a member with more than 256 KiB unsent is closed with 1013
  (:class:`course_ws.fanout.strategies.BoundedBroadcast`) and may resume with
  ``?since=``. The kernel's send buffer is capped too (:data:`KERNEL_SEND_BUFFER`):
  left alone, Linux lets it grow to megabytes per connection before the server
  even sees a backlog.
- **Compression is off.** Chat messages are small; per-message deflate would
  cost CPU for every member on every message and ~50 KiB of memory per
  connection.
- **Input is validated and rate limited**; a bad message gets an ``error``
  event and the connection stays open. Binary frames close with 1003.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.frames import CloseCode
from websockets.http11 import Request, Response

from course_ws.chat.broker import Broker, MemoryBroker
from course_ws.chat.protocol import ChatError, ErrorCode, guest_name, parse_say, valid_user
from course_ws.chat.ratelimit import TokenBucket
from course_ws.chat.rooms import LocalRooms
from course_ws.fanout.strategies import BoundedBroadcast
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


@dataclass(frozen=True)
class ChatQuery:
    """What a client may ask for in the query string: ``?user=NAME&since=N``."""

    user: str | None
    since: int | None

    @classmethod
    def parse(cls, path: str) -> ChatQuery:
        """Read the query of ``path``; :class:`ValueError` says what is wrong with it."""
        query = parse_qs(urlsplit(path).query, keep_blank_values=True)
        user = query.get("user", [None])[-1]
        if user is not None and not valid_user(user):
            raise ValueError("user must be 1-32 characters of A-Z a-z 0-9 _ . -")
        since = query.get("since", [None])[-1]
        if since is not None and not (since.isascii() and since.isdigit()):
            raise ValueError("since must be a message id: a whole number, 0 or more")
        return cls(user, int(since) if since is not None else None)


def check_chat_request(request: Request, params: dict[str, str]) -> Response | None:
    """Refuse a bad query string with 400 before the WebSocket opens."""
    try:
        ChatQuery.parse(request.path)
    except ValueError as exc:
        return text_response(400, f"{exc}\n")
    return None


def page() -> Response:
    """The browser chat client."""
    return text_response(200, PAGE.read_text(encoding="utf-8"), "text/html; charset=utf-8")


class ChatServer:
    """The chat of one process: its rooms and its broker."""

    def __init__(
        self,
        broker: Broker,
        options: ServeOptions,
        observe_publish: Callable[[float], None] | None = None,
    ) -> None:
        self.broker = broker
        self.options = options
        self.observe_publish = observe_publish
        """Called with the seconds from receiving each ``say`` to its last write (a metric)."""
        self.rooms: LocalRooms[ServerConnection] = LocalRooms(
            broker, BoundedBroadcast(), options.presence_limit
        )

    async def chat(self, websocket: ServerConnection, room: str) -> None:
        """One member of ``room``, from welcome to leave."""
        sock = websocket.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)
        query = ChatQuery.parse(websocket.request.path)
        user = query.user or guest_name()
        rate = self.options.message_rate
        bucket = TokenBucket(rate, self.options.message_burst)
        try:
            await self.rooms.join(room, websocket, user, query.since, websocket.send)
            async for raw in websocket:
                received = time.perf_counter()
                if isinstance(raw, bytes):
                    await websocket.close(
                        CloseCode.UNSUPPORTED_DATA, "chat messages are JSON text frames"
                    )
                    break
                try:
                    if not bucket.take():
                        raise ChatError(
                            ErrorCode.RATE_LIMITED, f"over {rate:g} messages a second; slow down"
                        )
                    say = parse_say(raw)
                except ChatError as error:
                    await websocket.send(error.event())
                    continue
                await self.broker.publish_message(room, user, say.text)
                if self.observe_publish is not None:
                    self.observe_publish(time.perf_counter() - received)
        except ConnectionClosedOK:
            pass  # it said goodbye while we were still sending (a long replay, say)
        except ConnectionClosedError as exc:
            logger.info("%s left %s abruptly: %s", user, room, exc)
        finally:
            await self.rooms.leave(room, websocket)

    def app(self) -> WebsocketsApp:
        """The routes and pages of this server."""
        return WebsocketsApp(
            routes=(
                Route.at("/echo", echo),
                Route.at("/chat/{room}", self.chat, check_chat_request),
            ),
            pages={"/": page},
            logger=logger,
        )


async def start(
    options: ServeOptions,
    sock: socket.socket,
    *,
    observe_publish: Callable[[float], None] | None = None,
) -> StartedWebsockets:
    """Serve the chat on ``sock`` with an in-process broker."""
    broker = MemoryBroker(history_size=options.history_size)
    server = ChatServer(broker, options, observe_publish)
    return await start_websockets_app(
        server.app(), options, sock, cleanup=server.broker.aclose, compression=None
    )
