"""``asgi``: the course's chat as a raw ASGI 3 application, no framework, on uvicorn.

Endpoints: ``/chat/{room}`` speaks the chat protocol (:mod:`course_ws.chat.protocol`),
``/echo`` echoes, ``GET /`` serves the browser page, ``GET /healthz`` answers
ok and ``GET /metrics`` the Prometheus metrics; ``POST /rooms/{room}/messages``
says a message into a room from outside any WebSocket (a script, a web hook).

This is the ASGI websocket spec (2.4) by hand, one event at a time:

- ``websocket.connect`` arrives first; the app answers ``websocket.accept``,
  or refuses before accepting with a real HTTP response
  (:func:`~course_ws.servers._asgi_host.refuse`, the ``websocket.http.response``
  extension): the chat service's status and text, 404 for unknown paths, 400
  for a bad request target or ``Host``;
- ``websocket.receive`` carries ``text`` or ``bytes``; ``websocket.send`` and
  ``websocket.close`` go out; ``websocket.disconnect`` ends the call (after it,
  an ASGI 2.4 server's ``send`` raises an :class:`OSError`).

Production choices, each for a reason, as in :mod:`course_ws.servers.chat`:

- **Fan-out never waits.** ASGI has only ``await send``, so each member has a
  bounded outbox (:func:`~course_ws.servers._asgi_host.asgi_outbox`) drained by
  its own writer task; the room only offers events to the outboxes. A member
  over 256 KiB or 1024 messages behind is closed with 1013 and, if it does not
  answer within ``--close-timeout``, its TCP connection is reset.
- **The welcome and the replay are sent directly**, not through the outbox
  (:mod:`course_ws.servers._asgi_chat` says why), bounded by the join timeout.
- **Shutdown says 1001.** uvicorn would send 1012 before the lifespan shutdown
  runs; the course's host closes every WebSocket with 1001 first
  (:class:`~course_ws.servers._asgi_host.StartedUvicorn`), then the lifespan
  shutdown closes the chat service.
- **Compression is off** (uvicorn offers ``permessage-deflate`` by default):
  chat messages are small, and deflate costs CPU per member per message.
- ``/echo`` closes a client whose replies stay blocked for ``--send-timeout``
  with 1013 (reset after ``--close-timeout``), like the ``echo`` server.

Options: ``max_size`` and the keepalive go to uvicorn (``ws_max_size``,
``ws_ping_interval``, ``ws_ping_timeout``); ``close_timeout`` bounds every close
and the shutdown; ``send_timeout`` the echo replies; every chat limit goes to
:class:`~course_ws.chat.service.ChatService`.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Coroutine
from typing import Any

from course_ws.chat.admission import CHAT_PREFIX, Admitted
from course_ws.chat.brokers import Broker, open_broker_for
from course_ws.chat.metrics import CONTENT_TYPE, ServerMetrics
from course_ws.chat.service import ChatService, Posted, posting_room
from course_ws.options import ServeOptions
from course_ws.servers._asgi_chat import (
    PAGE,
    BodyRefused,
    Member,
    OutboxFanout,
    check_request,
    codec_request,
    is_websocket_path,
    peer_address,
    read_body,
    request_target,
    serve_echo,
    serve_member,
    start_chat_app,
)
from course_ws.servers._asgi_host import (
    Receive,
    Scope,
    Send,
    StartedUvicorn,
    refuse,
)

logger = logging.getLogger("course_ws.servers.asgi")

JSON = "application/json"


class AsgiChatApp:
    """The raw ASGI 3 adapter of :class:`course_ws.chat.service.ChatService`."""

    def __init__(self, options: ServeOptions, broker: Broker | None = None) -> None:
        self.options = options
        self.metrics = ServerMetrics()
        self.fanout = OutboxFanout(self.metrics)
        broker = broker or open_broker_for(options)
        self.service: ChatService[Member] = ChatService(broker, self.fanout, options, self.metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            await self.websocket(scope, receive, send)
        elif kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)

    # -- lifespan ------------------------------------------------------------------------

    async def lifespan(self, receive: Receive, send: Send) -> None:
        """Start up at once; at shutdown (every WebSocket already closed), close the service."""
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.service.aclose()
                except Exception as exc:
                    logger.exception("closing the chat service failed")
                    await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return

    # -- HTTP ------------------------------------------------------------------------------

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GET /``, ``/healthz``, ``/metrics`` and ``POST /rooms/{room}/messages``;
        a refusal that says why for anything else."""
        path, error = check_request(scope)
        room = posting_room(path)
        if error is not None:
            logger.info("refused %s %.80s: %s", scope.get("method"), path, error)
            await self.respond(send, error.status, f"{error.reason}\n", headers=error.headers)
        elif room is not None and scope["method"] == "POST":
            await self.post(scope, receive, send, room)
        elif room is not None:
            await self.respond(
                send, 405, f"{scope['method']} is not allowed here\n", [("Allow", "POST")]
            )
        elif scope["method"] not in ("GET", "HEAD"):
            await self.respond(
                send, 405, f"{scope['method']} is not allowed here\n", [("Allow", "GET")]
            )
        elif path == "/healthz":
            await self.respond(send, 200, "ok\n")
        elif path == "/metrics":
            await self.respond(send, 200, self.metrics.render(), content_type=CONTENT_TYPE)
        elif path == "/":
            page = PAGE.read_text(encoding="utf-8")
            await self.respond(send, 200, page, content_type="text/html; charset=utf-8")
        elif is_websocket_path(path):
            await self.respond(
                send,
                426,
                f"{path} is a WebSocket endpoint: upgrade to websocket\n",
                [("Upgrade", "websocket")],
            )
        else:
            await self.respond(send, 404, f"nothing at {path}\n")

    async def post(self, scope: Scope, receive: Receive, send: Send, room: str) -> None:
        """``POST /rooms/{room}/messages``: say a message into ``room`` from outside any WebSocket.

        The body is read first, bounded in size and time; the chat service
        decides the rest and counts its refusals.
        """
        try:
            body = await read_body(scope, receive)
        except BodyRefused as refused:
            await self.respond(send, refused.status, f"{refused.reason}\n")
            return
        if body is None:  # the client left while sending it
            return
        address = peer_address(scope, self.options.trusted_proxy)
        content_type = codec_request(scope).headers.get("content-type")
        result = await self.service.post(room, body, address, content_type)
        if isinstance(result, Posted):
            await self.respond(send, result.status, result.body, content_type=JSON)
        else:
            await self.respond(send, result.status, f"{result.text}\n", counted=True)

    async def respond(
        self,
        send: Send,
        status: int,
        body: str | bytes,
        headers: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
        content_type: str = "text/plain; charset=utf-8",
        counted: bool = False,
    ) -> None:
        """A complete HTTP response; a status of 400 or more is counted as a refusal
        unless it was ``counted`` already (by the chat service)."""
        if status >= 400 and not counted:
            self.metrics.refused(status)
        data = body.encode() if isinstance(body, str) else body
        head = [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(data)).encode()),
            *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers),
        ]
        await send({"type": "http.response.start", "status": status, "headers": head})
        await send({"type": "http.response.body", "body": data})

    # -- WebSocket -------------------------------------------------------------------------

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one WebSocket: admit or refuse before accepting, then serve it."""
        connect = await receive()
        if connect["type"] != "websocket.connect":  # the client left before we answered
            return
        path, error = check_request(scope)
        if error is not None:
            logger.info("refused %.80s: %s", path, error)
            await self.refuse(scope, send, error.status, f"{error.reason}\n", error.headers)
        elif path == "/echo":
            await self.accepted(scope, send, self.echo(scope, receive, send))
        elif path.startswith(CHAT_PREFIX):
            address = peer_address(scope, self.options.trusted_proxy)
            decision = self.service.admit(request_target(scope), address)  # counts refusals
            if isinstance(decision, Admitted):
                await self.accepted(scope, send, self.chat(scope, receive, send, decision))
            else:
                await refuse(scope, send, decision.status, f"{decision.text}\n")
        else:
            await self.refuse(scope, send, 404, f"no WebSocket endpoint at {path}\n")

    async def refuse(
        self,
        scope: Scope,
        send: Send,
        status: int,
        text: str,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Refuse a handshake this adapter decided on (the service counts its own)."""
        self.metrics.refused(status)
        await refuse(scope, send, status, text, headers)

    async def accepted(self, scope: Scope, send: Send, serve: Coroutine[Any, Any, None]) -> None:
        """Accept, and count the connection while ``serve`` runs."""
        try:
            await send({"type": "websocket.accept"})
        except OSError:
            serve.close()
            return
        self.metrics.connections.inc()
        try:
            await serve
        finally:
            self.metrics.connections.dec()

    async def echo(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send every message back as it came; 1013 for a client that does not read them."""
        await serve_echo(scope, receive, send, self.metrics, self.options)

    async def chat(self, scope: Scope, receive: Receive, send: Send, admitted: Admitted) -> None:
        """One member of a room, from welcome to leave."""
        await serve_member(
            scope, receive, send, self.service, self.fanout, admitted, self.options.close_timeout
        )


def create_app(options: ServeOptions | None = None, broker: Broker | None = None) -> AsgiChatApp:
    """The ASGI application, for any ASGI server.

    ``uvicorn course_ws.servers.asgi:create_app --factory`` serves it with default options
    (but without the host's 1001 on shutdown: :func:`start` adds that).
    """
    return AsgiChatApp(options or ServeOptions(), broker)


async def start(options: ServeOptions, sock: socket.socket) -> StartedUvicorn:
    """Serve the chat on ``sock`` with uvicorn, through the course's ASGI host."""
    app = create_app(options)
    return await start_chat_app(app, options, sock, app.metrics)
