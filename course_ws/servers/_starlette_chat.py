"""The chat's endpoints as Starlette endpoints: shared by the ``starlette`` and ``fastapi`` servers.

FastAPI is Starlette with dependency injection on top, so both servers route
to the same :class:`StarletteChat`: the endpoints take Starlette's
``Request`` and ``WebSocket``, and everything below the framework (admission,
the member, the outbox, the echo) is :mod:`course_ws.servers._asgi_chat`.

What Starlette 1.x changes about that plumbing, and how it is bridged here:

- ``WebSocket.send`` tracks state. After the client is gone, the ASGI 2.4
  ``OSError`` becomes ``WebSocketDisconnect(1006)``; after a close was sent it
  raises ``WebSocketDisconnected`` (a :class:`RuntimeError`: ``Cannot call
  "send" once a close message has been sent``). :func:`asgi_channel` turns the
  first back into an :class:`OSError`, which the plumbing treats as "the client
  left"; the second can only come from a second close, which
  :func:`~course_ws.servers._asgi_host.close_websocket` suppresses (the plumbing
  stops each member's writer before it closes, so no data follows a close).
- A refusal before accept is a real HTTP response:
  ``websocket.send_denial_response(PlainTextResponse(text, status))`` (the ASGI
  ``websocket.http.response`` extension, which the course's uvicorn host offers).
  An ``HTTPException`` raised before accept goes through the app's
  ``exception_handlers`` (:meth:`StarletteChat.http_error`), whose response
  Starlette turns into the same denial; that is how a FastAPI dependency refuses.
- Unknown WebSocket paths get 404, not Starlette's default close before accept
  (which uvicorn answers with 403): a catch-all route raises ``HTTPException(404)``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.types import ExceptionHandler
from starlette.websockets import WebSocket, WebSocketDisconnect

from course_ws.chat.admission import Admitted, Refusal
from course_ws.chat.brokers import Broker, open_broker_for
from course_ws.chat.metrics import CONTENT_TYPE, ServerMetrics
from course_ws.chat.service import ChatService, Posted
from course_ws.chat.session import CloseCode
from course_ws.options import ServeOptions
from course_ws.servers._asgi_chat import (
    PAGE,
    Member,
    OutboxFanout,
    RequestCheck,
    is_websocket_path,
    peer_address,
    request_target,
    serve_echo,
    serve_member,
)
from course_ws.servers._asgi_host import HTTP_RESPONSE, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

Serve = Callable[[Scope, Receive, Send], Awaitable[None]]


class Refused(HTTPException):
    """A handshake the chat service refused: already counted, so the handler does not count it."""


def asgi_channel(websocket: WebSocket) -> tuple[Receive, Send]:
    """``receive`` and ``send`` of an accepted ``websocket``, with ASGI 2.4's ``OSError``.

    Starlette's state checks stay in place; only its ``WebSocketDisconnect(1006)``
    for "the client is gone" is turned back into the :class:`OSError` the shared
    plumbing expects, so that it never escapes as an error of the app.
    """

    async def send(message: Message) -> None:
        try:
            await websocket.send(message)
        except WebSocketDisconnect as exc:
            raise ConnectionResetError(f"the client is gone ({exc.code})") from None

    return websocket.receive, send


class StarletteChat:
    """The chat of one process, as Starlette endpoints over :class:`ChatService`."""

    def __init__(self, options: ServeOptions, broker: Broker | None = None) -> None:
        self.options = options
        self.metrics = ServerMetrics()
        self.fanout = OutboxFanout(self.metrics)
        broker = broker or open_broker_for(options)
        self.service: ChatService[Member] = ChatService(broker, self.fanout, options, self.metrics)

    # -- the app's parts ----------------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """Nothing to start; at shutdown (every WebSocket closed by the host), close the service."""
        yield
        await self.service.aclose()

    @property
    def middleware(self) -> list[Middleware]:
        """A bad request target or ``Host`` is refused with 400 before routing."""
        return [Middleware(RequestCheck, metrics=self.metrics)]

    @property
    def exception_handlers(self) -> dict[Any, ExceptionHandler]:
        """``HTTPException`` (404, 405, a refusal) as a plain-text answer, counted.

        One handler for HTTP and WebSocket alike (Starlette picks it by exception
        class); its type says so only through a cast.
        """
        return {HTTPException: cast("ExceptionHandler", self.http_error)}

    async def http_error(self, conn: HTTPConnection, exc: Exception) -> Response | None:
        """Answer an ``HTTPException`` in plain text, over HTTP or as a WebSocket denial.

        Starlette calls this for HTTP requests and for WebSockets alike; a
        response returned for a WebSocket before accept is sent as its denial.
        """
        assert isinstance(exc, HTTPException)
        if not isinstance(exc, Refused):
            self.metrics.refused(exc.status_code)
        logger.info("refused %s: %d %s", conn.url.path[:80], exc.status_code, exc.detail)
        if conn.scope["type"] == "websocket" and HTTP_RESPONSE not in conn.scope.get(
            "extensions", {}
        ):
            assert isinstance(conn, WebSocket)
            await conn.close(CloseCode.POLICY_VIOLATION)  # the server answers 403
            return None
        return PlainTextResponse(f"{exc.detail}\n", exc.status_code, headers=exc.headers)

    # -- HTTP ------------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        """``GET /``: the browser chat page."""
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    async def healthz(self, request: Request) -> Response:
        """``GET /healthz``: ok, for load balancers."""
        return PlainTextResponse("ok\n")

    async def prometheus(self, request: Request) -> Response:
        """``GET /metrics``: the Prometheus text format."""
        return Response(self.metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def post(self, request: Request) -> Response:
        """``POST /rooms/{room}/messages``: a message said into a room over HTTP.

        :class:`~course_ws.servers._asgi_chat.RequestCheck` has read the body
        already, bounded, so ``request.body()`` holds at most ``MAX_POST_BYTES``.
        """
        body = await request.body()
        address = peer_address(request.scope, self.options.trusted_proxy)
        content_type = request.headers.get("content-type")
        result = await self.service.post(request.path_params["room"], body, address, content_type)
        return self.posted(result)

    def posted(self, result: Posted | Refusal) -> Response:
        """``201`` and where the message went, or the service's refusal (counted already)."""
        if isinstance(result, Posted):
            return Response(result.body, result.status, media_type="application/json")
        return PlainTextResponse(f"{result.text}\n", result.status)

    async def upgrade_required(self, request: Request) -> Response:
        """A plain ``GET`` of a WebSocket endpoint: 426, say how to ask."""
        path = request.url.path
        if not is_websocket_path(path):  # /chat/{room} with a room that breaks the rule
            raise HTTPException(404, f"nothing at {path}")
        self.metrics.refused(426)
        return PlainTextResponse(
            f"{path} is a WebSocket endpoint: upgrade to websocket\n",
            426,
            headers={"Upgrade": "websocket"},
        )

    # -- WebSocket ---------------------------------------------------------------------------

    def admit(self, websocket: WebSocket) -> Admitted | Refusal:
        """Ask the chat service about this handshake (it counts its refusals)."""
        address = peer_address(websocket.scope, self.options.trusted_proxy)
        return self.service.admit(request_target(websocket.scope), address)

    async def chat(self, websocket: WebSocket) -> None:
        """``/chat/{room}``: admit or refuse before accepting, then one member."""
        decision = self.admit(websocket)
        if isinstance(decision, Refusal):
            await deny(websocket, decision.status, decision.text)
            return
        await self.member(websocket, decision)

    async def member(self, websocket: WebSocket, admitted: Admitted) -> None:
        """Accept an admitted handshake and serve the member until it leaves."""

        async def serve(scope: Scope, receive: Receive, send: Send) -> None:
            await serve_member(
                scope,
                receive,
                send,
                self.service,
                self.fanout,
                admitted,
                self.options.close_timeout,
            )

        await self.accepted(websocket, serve)

    async def echo(self, websocket: WebSocket) -> None:
        """``/echo``: every message back as it came."""

        async def serve(scope: Scope, receive: Receive, send: Send) -> None:
            await serve_echo(scope, receive, send, self.metrics, self.options)

        await self.accepted(websocket, serve)

    async def no_endpoint(self, websocket: WebSocket) -> None:
        """Any other WebSocket path: 404 before accept (through :meth:`http_error`)."""
        raise HTTPException(404, f"no WebSocket endpoint at {websocket.url.path}")

    async def accepted(self, websocket: WebSocket, serve: Serve) -> None:
        """Accept, and count the connection while ``serve`` runs on its ASGI channel."""
        try:
            await websocket.accept()
        except (OSError, WebSocketDisconnect):
            return
        receive, send = asgi_channel(websocket)
        self.metrics.connections.inc()
        try:
            await serve(websocket.scope, receive, send)
        finally:
            self.metrics.connections.dec()


async def deny(websocket: WebSocket, status: int, text: str) -> None:
    """Refuse ``websocket`` before accept with HTTP ``status`` and ``text``.

    ``send_denial_response`` needs the server's ``websocket.http.response``
    extension; without it, a close before accept is all ASGI allows (uvicorn
    and Daphne answer it with 403).
    """
    if HTTP_RESPONSE in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(PlainTextResponse(f"{text}\n", status))
    else:
        await websocket.close(CloseCode.POLICY_VIOLATION)
