"""Serving an ASGI application with uvicorn on a socket we bound ourselves.

Every ASGI entry of the catalogue (raw ASGI, Starlette, FastAPI, Channels)
starts here, so that they all stop the same way and refuse the same way.

Stopping: uvicorn's ``Server.shutdown`` (``uvicorn/server.py``, uvicorn 0.54)
closes the listeners (lines 285-288), then calls ``connection.shutdown()`` on every open
connection (lines 290-292), which for a WebSocket writes a close frame with
**1012** (service restart) straight to the transport
(``websockets_sansio_impl.py`` lines 177-192, ``wsproto_impl.py`` lines
206-220), and only after that runs the lifespan shutdown (lines 309-311).
An app that closes its sockets in its lifespan handler is too late: the
clients already got 1012. So :meth:`StartedUvicorn.aclose` closes every
WebSocket with **1001** (going away) first, through a wrapper
(:class:`HostMiddleware`) that tracks each connection's ``send``, and only
then lets uvicorn shut down.

Ending for certain: uvicorn only ever calls ``transport.close()``, and
asyncio's ``close()`` waits until the write buffer is flushed. A peer that
stopped reading never lets it flush, so neither uvicorn's close timer
(``websockets_sansio_impl.py`` line 520) nor its keepalive timeout (line 373)
nor its shutdown (line 192) ends that TCP connection; and ``send`` itself,
close frames included, waits while the transport is paused
(``await self.writable.wait()``, line 433; ``wsproto_impl.py`` line 378). The
host therefore serves WebSockets with subclasses of uvicorn's protocols that
keep their transport, so the host (at shutdown) and the app
(:func:`hosted_connection`, :func:`asgi_outbox`) can abort it, with a reset.

Refusing: both uvicorn implementations advertise the ASGI
``websocket.http.response`` extension (``"extensions"`` in the scope,
``websockets_sansio_impl.py`` line 265, ``wsproto_impl.py`` line 248) and turn
``websocket.http.response.start``/``.body`` into a real HTTP response with
that status and body (sansio lines 476-489 and 527-544, wsproto lines 421-440
and 477-487). :func:`refuse` uses it, and falls back to a ``websocket.close``
before accept, which uvicorn answers with 403 (sansio lines 462-475, wsproto
lines 407-419), on a server without it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import math
import socket
import struct
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, cast

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import (
    HeaderLineTooLong,
    InvalidState,
    RequestLineTooLong,
    TooManyHeaders,
)
from websockets.frames import Frame
from websockets.http11 import Request as WebsocketsRequest

from course_ws.fanout.outbox import Outbox
from course_ws.options import WS_IMPLEMENTATIONS, ServeOptions
from course_ws.rfc6455 import MAX_FRAGMENTS, WEBSOCKET_VERSION, HandshakeError, check_version
from course_ws.rfc6455 import Request as CodecRequest
from course_ws.rfc6455.constants import CloseCode
from course_ws.servers._bounded_http import bounded_http

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STARTUP_POLL = 0.01
CLOSE_TIMEOUT = 5.0
"""Seconds :meth:`StartedUvicorn.aclose` gives clients to answer the 1001 close frame."""
SHUTTING_DOWN = "server shutting down"
HTTP_RESPONSE = "websocket.http.response"
"""The ASGI extension that lets a WebSocket app refuse with any HTTP status and a body."""
HOST_EXTENSION = "course_ws.host"
"""Where the host puts the connection's :class:`HostedConnection` in the scope's extensions."""

_RESET_ON_CLOSE = struct.pack("ii", 1, 0)
"""``SO_LINGER`` on, zero seconds: closing the socket sends a reset and drops unsent data."""

logger = logging.getLogger("course_ws.servers.asgi")


class ConnectionClosedByHost(OSError):
    """The host closed this WebSocket (shutting down): the app's ``send`` cannot go through.

    An :class:`OSError`, as ASGI 2.4 asks of a ``send`` after a disconnect, so
    that Starlette turns it into ``WebSocketDisconnect(1006)`` like any other.
    """


class HostedConnection:
    """What the host lets an app do to its own connection beyond ASGI: abort it, await its end."""

    def __init__(
        self,
        transport: asyncio.BaseTransport,
        write_now: Callable[[str | bytes], bool] = lambda message: False,
        refusal_sent: Callable[[], object] = lambda: None,
    ) -> None:
        self._transport = transport
        self._write_now = write_now
        self.refusal_sent = refusal_sent
        """Called once the app's HTTP refusal is sent in full (the protocol may need to know)."""
        self._lost = asyncio.Event()
        self._on_lost: list[Callable[[], object]] = []
        self._stall: tuple[float, Callable[[], object]] | None = None
        self._stall_timer: asyncio.TimerHandle | None = None

    def try_send(self, message: str | bytes) -> bool:
        """Write one message now, if nothing stands in the way; ``False`` if it was not written.

        What uvicorn's ``send`` would do for ``websocket.send``, without the
        ``await``: it writes only while the connection is open, the handshake
        done, no close sent and the transport not paused (``writable`` set), so
        it never writes past the transport's high-water mark. A ``False`` says
        "use ``send``": it is never an error. This is what lets a room's
        fan-out write to 1,000 idle members without waking 1,000 tasks
        (:class:`~course_ws.fanout.outbox.Outbox`'s ``write_now``).
        """
        return not self._lost.is_set() and self._write_now(message)

    def on_send_stalled(self, timeout: float, callback: Callable[[], object]) -> None:
        """Call ``callback`` once the transport has been paused for ``timeout`` seconds.

        The transport pauses when its buffer is over the high-water mark (the
        peer is not reading) and resumes when it drains; each pause starts the
        timer, each resume cancels it. One timer per connection, not one
        ``asyncio.timeout`` per message: those cost 4 µs a message.
        """
        self._stall = (timeout, callback)

    def _paused(self) -> None:
        if self._stall is not None and self._stall_timer is None and not self._lost.is_set():
            timeout, callback = self._stall
            self._stall_timer = asyncio.get_running_loop().call_later(timeout, callback)

    def _resumed(self) -> None:
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    @property
    def closed(self) -> bool:
        """Whether the TCP connection is over."""
        return self._lost.is_set()

    @property
    def closing(self) -> bool:
        """Whether the transport is closing or gone: nothing written now would arrive."""
        return self._lost.is_set() or self._transport.is_closing()

    def abort(self) -> None:
        """End the TCP connection now, unsent data dropped: the peer sees a reset. Idempotent.

        ``transport.abort()`` alone closes the file descriptor, but the kernel
        keeps an orphaned socket that goes on offering the unsent bytes to a
        peer that reads nothing, its FIN queued behind them: the peer never
        learns it was dropped, and the buffer lingers for minutes. A zero
        linger time turns the close into a reset, which arrives at once.
        """
        if self._lost.is_set():
            return
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing to reset
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        cast(asyncio.WriteTransport, self._transport).abort()

    @property
    def tcp_socket(self) -> socket.socket | None:
        """The connection's socket (to set options such as ``SO_SNDBUF``), if it has one."""
        sock = self._transport.get_extra_info("socket")
        return cast(socket.socket, sock) if sock is not None else None

    async def wait_closed(self) -> None:
        """Return once the TCP connection is over."""
        await self._lost.wait()

    def _call_when_closed(self, callback: Callable[[], object]) -> None:
        if self._lost.is_set():
            callback()
        else:
            self._on_lost.append(callback)

    def _connection_lost(self) -> None:
        self._lost.set()
        self._resumed()
        callbacks, self._on_lost = self._on_lost, []
        for callback in callbacks:
            callback()


def _not_counted(status: int) -> None:
    """Where a protocol's own refusals go when its server keeps no metrics."""


class _HostedWebSocket(asyncio.Protocol):
    """Mixin for uvicorn's WebSocket protocols: keep the transport, so it can be aborted.

    ``refused`` is told each status the protocol answers on its own, before
    the app sees the request (set per server by :func:`start_asgi_app`).
    """

    hosted: HostedConnection | None = None
    refused: Callable[[int], None] = staticmethod(_not_counted)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.hosted = HostedConnection(transport, self._write_now, self._refusal_sent)
        super().connection_made(transport)

    def _write_now(self, message: str | bytes) -> bool:
        """Write a ``websocket.send`` now if the protocol can without waiting (each one says)."""
        return False

    def _refusal_sent(self) -> None:
        """The app's ``websocket.http.response`` is sent in full."""

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.hosted is not None:
            self.hosted._paused()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.hosted is not None:
            self.hosted._resumed()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            super().connection_lost(exc)
        finally:
            if self.hosted is not None:
                self.hosted._connection_lost()


class _SansIOWebSocket(_HostedWebSocket, WebSocketsSansIOProtocol):
    """uvicorn's ``websockets-sansio`` protocol (its default since 0.50), abortable.

    It also answers a handshake for another ``Sec-WebSocket-Version`` with 426
    and ``Sec-WebSocket-Version: 13`` (RFC 6455 §4.2.2), as every catalogue
    server does: uvicorn hands the request to ``websockets``' ``accept`` before
    the app sees it, and that answers a bare 400. It sends the 431 that
    ``websockets`` writes for a huge request head, which uvicorn leaves unsent
    (the connection would hang until the client gives up). And it closes a message of
    more than :data:`~course_ws.rfc6455.MAX_FRAGMENTS` frames with 1009:
    uvicorn keeps every fragment in a list, so endless empty continuation
    frames (which ``max_size`` never sees) would grow it without bound. Finally,
    a refusal sent by the app counts as a finished handshake, so uvicorn does
    not log an error after each one.
    """

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self.handshake_initiated and self.conn.handshake_exc is not None:
            # websockets refused a request it could not parse (431 for a huge head):
            # uvicorn leaves that answer unsent and the connection open.
            if (status := _status_of(self.conn.handshake_exc)) is not None:
                self.refused(status)
            self.handshake_initiated = self.handshake_complete = self.close_sent = True
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()

    def _refusal_sent(self) -> None:
        # uvicorn 0.54 sends the refusal but never marks the handshake as done, so it
        # logs "ASGI callable returned without completing handshake" after each one.
        # (Told by the host's send, not by overriding this protocol's: that would cost
        # every message a call.)
        self.handshake_complete = True

    def _write_now(self, message: str | bytes) -> bool:
        # The conditions of WebSocketsSansIOProtocol.send for "websocket.send", never waiting.
        if (
            self.disconnected
            or not self.handshake_complete
            or self.close_sent
            or self.initial_response is not None
            or not self.writable.is_set()
            or self.transport.is_closing()
        ):
            return False
        try:
            if isinstance(message, str):
                self.conn.send_text(message.encode())
            else:
                self.conn.send_binary(message)
        except InvalidState:
            return False
        self.transport.write(b"".join(self.conn.data_to_send()))
        return True

    def handle_cont(self, event: Frame) -> None:
        if self.close_sent:
            return  # closing: nothing more reaches the app
        if len(self.frames) >= MAX_FRAGMENTS:
            self.frames = []
            self.conn.fail(CloseCode.MESSAGE_TOO_BIG, "too many fragments")
            self.handle_parser_exception()
            return
        super().handle_cont(event)

    def handle_connect(self, event: WebsocketsRequest) -> None:
        version = event.headers.get("Sec-WebSocket-Version")
        if version == WEBSOCKET_VERSION or event.method != "GET":
            super().handle_connect(event)
            return
        try:
            check_version(
                CodecRequest("GET", event.path, (1, 1), {"sec-websocket-version": version or ""})
            )
        except HandshakeError as error:
            logger.info("refused %.80s: %s", event.path, error)
            self.refused(error.status)
            self.request = event
            self.response = self.conn.reject(error.status, f"{error.reason}\n")
            for name, value in error.headers:
                self.response.headers[name] = value
            self.handshake_initiated = True
            self.handshake_complete = True
            self.close_sent = True
            self.conn.send_response(self.response)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()


def _status_of(error: Exception) -> int | None:
    """The HTTP status ``websockets`` answered a request it could not parse with, if any."""
    if isinstance(error, RequestLineTooLong):
        return 414
    if isinstance(error, HeaderLineTooLong | TooManyHeaders):
        return 431
    return None  # not HTTP at all: websockets closed without an answer


@functools.cache
def _protocol_class(ws: str) -> type[asyncio.Protocol]:
    """The abortable protocol class for ``ws``; wsproto is imported only when asked for."""
    if ws == "websockets-sansio":
        return _SansIOWebSocket
    if ws != "wsproto":
        raise ValueError(f"ws must be one of {', '.join(WS_IMPLEMENTATIONS)}, not {ws!r}")
    try:
        from uvicorn.protocols.websockets.wsproto_impl import WSProtocol
    except ImportError as exc:  # wsproto is not a dependency of uvicorn[standard]
        raise RuntimeError("ws='wsproto' needs the wsproto package: pip install wsproto") from exc

    from wsproto.events import BytesMessage, RejectConnection, TextMessage
    from wsproto.utilities import LocalProtocolError, RemoteProtocolError

    class _WsprotoWebSocket(_HostedWebSocket, WSProtocol):
        """uvicorn's ``wsproto`` protocol, abortable, with its own refusals counted.

        wsproto answers a handshake it cannot accept itself (426 with
        ``Sec-WebSocket-Version: 13`` for another version, 400 for a bad
        request), before the app sees it; uvicorn 0.54 writes that answer in
        ``data_received`` (``wsproto_impl.py`` lines 163-169), done here the same
        way, and counted. wsproto needs neither of the sansio fixes: its message
        buffer is one growing string bounded by ``ws_max_size`` (no list of
        fragments), and the request head is bounded before it gets here
        (:mod:`course_ws.servers._bounded_http`).
        """

        def _write_now(self, message: str | bytes) -> bool:
            # The conditions of WSProtocol.send for "websocket.send", never waiting.
            if (
                self.disconnected
                or not self.handshake_complete
                or self.close_sent
                or self.response_started
                or not self.writable.is_set()
                or self.transport.is_closing()
            ):
                return False
            try:
                event = (
                    TextMessage(data=message)
                    if isinstance(message, str)
                    else BytesMessage(data=message)
                )
                output = self.conn.send(event)
            except LocalProtocolError:
                return False
            self.transport.write(output)
            return True

        def data_received(self, data: bytes) -> None:
            try:
                self.conn.receive_data(data)
            except RemoteProtocolError as error:
                if isinstance(error.event_hint, RejectConnection):
                    self.refused(error.event_hint.status_code)
                self.transport.write(self.conn.send(error.event_hint))  # type: ignore[arg-type]
                self.transport.close()
                return
            except LocalProtocolError:  # data after the close handshake completed
                self.transport.close()
                return
            self.handle_events()

    return _WsprotoWebSocket


def hosted_connection(scope: Scope) -> HostedConnection | None:
    """The :class:`HostedConnection` of this WebSocket scope, or ``None`` on another server."""
    extensions = scope.get("extensions") or {}
    found = extensions.get(HOST_EXTENSION, {}).get("connection")
    return found if isinstance(found, HostedConnection) else None


# -- refusing and closing, for the adapters ----------------------------------


async def refuse(
    scope: Scope,
    send: Send,
    status: int,
    text: str,
    headers: Sequence[tuple[str, str]] = (),
) -> None:
    """Refuse a WebSocket handshake with HTTP ``status`` and ``text`` as a plain-text body.

    Call it instead of accepting; ``headers`` are extra response headers (``Allow``,
    ``Sec-WebSocket-Version``, as :class:`course_ws.rfc6455.HandshakeError` lists them).
    Where the server does not offer the
    ``websocket.http.response`` extension, the client gets uvicorn's and
    Daphne's answer to a close before accept instead: 403 without a body.
    """
    if not 400 <= status <= 599:
        raise ValueError(f"a refusal is an HTTP error status (400-599), not {status}")
    extensions = scope.get("extensions") or {}
    if HTTP_RESPONSE not in extensions:
        await send({"type": "websocket.close", "code": CloseCode.POLICY_VIOLATION})
        return
    body = text.encode()
    # wsproto's implementation reads message["headers"] unguarded (wsproto_impl.py line 435)
    head = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers),
    ]
    await send({"type": "websocket.http.response.start", "status": status, "headers": head})
    await send({"type": "websocket.http.response.body", "body": body})


async def close_websocket(scope: Scope, send: Send, code: int, reason: str = "") -> None:
    """Close with ``code`` and return once the connection is over, where the host can tell.

    Harmless when the connection is already closed: ASGI 2.4 servers raise on
    a ``send`` after a disconnect (:class:`OSError`), and uvicorn raises
    :class:`RuntimeError` on a second close. On uvicorn the close frame itself
    waits while the peer does not read: bound this with a timeout and abort
    (:class:`~course_ws.fanout.outbox.Outbox` does).
    """
    with contextlib.suppress(OSError, RuntimeError):
        await send({"type": "websocket.close", "code": code, "reason": reason})
    connection = hosted_connection(scope)
    if connection is not None:
        await connection.wait_closed()


def asgi_outbox(scope: Scope, send: Send, **limits: Any) -> Outbox[str | bytes]:
    """An :class:`~course_ws.fanout.outbox.Outbox` for an accepted ASGI WebSocket.

    Messages go out as ``websocket.send`` (``text`` for :class:`str`, ``bytes``
    otherwise). A member that falls too far behind is closed with 1013 and, if
    that does not end it within the close timeout, aborted: through the host's
    :class:`HostedConnection` when served here, else by cancelling the task
    that creates the outbox (the app's), which is all an app can do alone.
    ``limits`` are the outbox's ``max_bytes``, ``max_messages``, ``close_timeout``
    and ``name``. Create it in the app's own task, after the accept.
    """

    async def send_message(message: str | bytes) -> None:
        if isinstance(message, str):
            await send({"type": "websocket.send", "text": message})
        else:
            await send({"type": "websocket.send", "bytes": message})

    async def close(code: int, reason: str) -> None:
        await close_websocket(scope, send, code, reason)

    connection = hosted_connection(scope)
    abort: Callable[[], object]
    if connection is not None:
        abort = connection.abort
        limits.setdefault("write_now", connection.try_send)
    else:
        app_task = asyncio.current_task()
        abort = app_task.cancel if app_task is not None else (lambda: None)
    return Outbox(send_message, close=close, abort=abort, **limits)


# -- tracking connections -------------------------------------------------------


class _Phase(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSED = "closed"


class _Tracked:
    """One WebSocket app call: its real ``send``, and whether it still needs a close frame."""

    def __init__(self, host: HostMiddleware, send: Send, hosted: HostedConnection | None) -> None:
        self.host = host
        self.raw_send = send
        self.hosted = hosted
        self.phase = _Phase.CONNECTING
        self.closed_by_host = False

    async def receive(self, receive: Receive) -> Message:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            self.phase = _Phase.CLOSED
        return message

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "websocket.send" and not self.closed_by_host:  # the path of every message
            if self.hosted is not None and self.hosted.closing:
                # uvicorn would still write to a transport whose last write failed, and
                # asyncio logs "socket.send() raised exception." for each such write.
                raise ConnectionResetError("the connection is closing: the client is gone")
            try:
                await self.raw_send(message)
            except RuntimeError:  # see below
                if self.closed_by_host:
                    raise ConnectionClosedByHost(f"{SHUTTING_DOWN}: the server closed it") from None
                raise
            return
        if self.closed_by_host:
            if kind == "websocket.close":
                return  # what the app asks for is done already
            raise ConnectionClosedByHost(f"{SHUTTING_DOWN}: the server closed this WebSocket")
        refusal_done = kind == "websocket.http.response.body" and not message.get("more_body")
        if kind == "websocket.close" or refusal_done:
            self.phase = _Phase.CLOSED  # before awaiting: the host must not close it too
        try:
            await self.raw_send(message)
            if refusal_done and self.hosted is not None:
                self.hosted.refusal_sent()
        except RuntimeError:
            # uvicorn refuses anything after a close; if the host's close got there
            # first (both waited for the paused transport), say so the ASGI way.
            if self.closed_by_host:
                raise ConnectionClosedByHost(f"{SHUTTING_DOWN}: the server closed it") from None
            raise
        if kind == "websocket.accept" and self.phase is _Phase.CONNECTING:
            self.phase = _Phase.OPEN
            if self.host.draining:
                await self.close_by_host(CloseCode.GOING_AWAY, SHUTTING_DOWN)

    async def close_by_host(self, code: int, reason: str) -> None:
        """Send the host's close frame unless the app already closed; never raise for that."""
        if self.phase is not _Phase.OPEN or self.closed_by_host:
            return
        if self.hosted is not None and self.hosted.closing:
            return  # the client is gone, or its close is under way: nothing would arrive
        self.closed_by_host = True
        try:
            await self.raw_send({"type": "websocket.close", "code": code, "reason": reason})
        except (OSError, RuntimeError) as exc:  # the peer or the app closed meanwhile
            logger.debug("closing with %d: already closed (%r)", code, exc)


class HostMiddleware:
    """Wraps an ASGI app to track its open WebSockets, so that the host can close them.

    Other scopes (``http``, ``lifespan``) pass through untouched. Each WebSocket
    scope gains a :class:`HostedConnection` under ``extensions["course_ws.host"]``
    when the server is this host (see :func:`hosted_connection`).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.connections: set[_Tracked] = set()
        """WebSockets whose app call or TCP connection is not over yet."""
        self.draining = False
        """Set at shutdown: a WebSocket accepted from now on is closed with 1001 at once."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        protocol = getattr(send, "__self__", None)  # uvicorn hands its protocol's bound send
        hosted = protocol.hosted if isinstance(protocol, _HostedWebSocket) else None
        if hosted is not None:
            extensions = dict(scope.get("extensions") or {})
            extensions[HOST_EXTENSION] = {"connection": hosted}
            scope = {**scope, "extensions": extensions}
        tracked = _Tracked(self, send, hosted)
        self.connections.add(tracked)
        # The transport tells when a hosted client is gone: then no wrapper on every message.
        receive_app: Receive = (
            receive if hosted is not None else functools.partial(tracked.receive, receive)
        )
        try:
            await self.app(scope, receive_app, tracked.send)
        finally:
            # Tracked until both the app call and the TCP connection are over: after
            # the app returns, a close handshake (or a stalled reader) may linger.
            if hosted is None:
                self.connections.discard(tracked)
            else:
                hosted._call_when_closed(lambda: self.connections.discard(tracked))

    async def close_all(self, code: int, reason: str, timeout: float) -> None:
        """Close every open WebSocket with ``code``; wait ``timeout`` s at most for each to end.

        Returns once every app call has returned and every TCP connection is
        over, or when ``timeout`` has passed; what is left then (a peer that
        stopped reading, or did not answer the close frame) is aborted.
        """
        self.draining = True
        closing = [
            asyncio.create_task(tracked.close_by_host(code, reason))
            for tracked in list(self.connections)
        ]
        try:
            async with asyncio.timeout(timeout):
                await self._wait_until_all_closed()
        except TimeoutError:
            logger.warning("aborting WebSockets that did not close within %g s", timeout)
        finally:
            for tracked in list(self.connections):
                if tracked.hosted is not None:
                    tracked.hosted.abort()
            # an aborted transport wakes a close frame waiting for it (it raises)
            for task in closing:
                task.cancel()
            if closing:
                await asyncio.wait(closing)

    async def _wait_until_all_closed(self) -> None:
        while self.connections:
            open_ = [t.hosted for t in self.connections if t.hosted and not t.hosted.closed]
            if open_:
                await open_[0].wait_closed()
            else:
                await asyncio.sleep(STARTUP_POLL)  # TCP is over; app calls still returning


# -- starting and stopping -------------------------------------------------------


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    """``server.serve()``, with uvicorn's ``sys.exit`` on a failed startup turned into an error.

    uvicorn is written to own its process: when the app's lifespan startup fails it
    raises ``SystemExit(3)``. Raised inside a task, that escapes the event loop and
    leaves the task's exception unretrieved; as a library we report it instead.
    """
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:
        raise RuntimeError(
            f"uvicorn could not start (SystemExit {exc.code}): see the server log"
        ) from None


class StartedUvicorn:
    """A started uvicorn server running as a task on the current loop.

    :meth:`aclose` stops accepting, closes every WebSocket with 1001 (going
    away) and waits for the clients to answer, aborts those that do not within
    the close timeout, and only then lets uvicorn shut down: uvicorn's own
    shutdown would send 1012 (service restart) before the app's lifespan
    shutdown could say anything.
    """

    def __init__(
        self,
        server: uvicorn.Server,
        task: asyncio.Task[None],
        host: HostMiddleware,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        self.server = server
        self.task = task
        self.host = host
        self.close_timeout = close_timeout

    @property
    def open_websockets(self) -> int:
        """WebSockets whose app call or TCP connection is not over (0 after :meth:`aclose`)."""
        return len(self.host.connections)

    async def aclose(self) -> None:
        """Close every WebSocket with 1001, then stop uvicorn and wait until it is done."""
        if not self.task.done():
            for listener in getattr(self.server, "servers", []):
                listener.close()  # uvicorn's shutdown does it too; new clients now would get 1012
            await self.host.close_all(CloseCode.GOING_AWAY, SHUTTING_DOWN, self.close_timeout)
        self.server.should_exit = True
        await self.task


async def start_asgi_app(
    app: ASGIApp,
    options: ServeOptions,
    sock: socket.socket,
    *,
    ws: str | None = None,
    close_timeout: float = CLOSE_TIMEOUT,
    refused: Callable[[int], None] = _not_counted,
    **settings: Any,
) -> StartedUvicorn:
    """Serve the ASGI ``app`` on ``sock`` and return once uvicorn accepts connections.

    ``ws`` picks uvicorn's WebSocket implementation (default: ``options.ws``):
    ``"websockets-sansio"`` (uvicorn's default) or ``"wsproto"`` (which needs the
    ``wsproto`` package).
    ``options`` give the message size limit and the keepalive; ``refused`` is
    told the status of each request the host refuses before the app sees it
    (426 for another WebSocket version, 431 for a request head too large);
    ``settings`` are extra :class:`uvicorn.Config` arguments. A failure during startup (a lifespan
    error, say) is raised here instead of being logged.
    """
    counted = {"refused": staticmethod(refused)}
    websocket = _protocol_class(ws or options.ws)
    protocol_class = type(websocket.__name__, (websocket,), counted)
    host = HostMiddleware(app)
    config = uvicorn.Config(
        host,
        log_config=None,
        log_level=options.log_level,
        http=bounded_http(refused),
        ws=protocol_class,
        ws_max_size=options.max_size,
        ws_ping_interval=options.ping_interval,
        ws_ping_timeout=options.ping_timeout,
        lifespan="auto",
        timeout_graceful_shutdown=math.ceil(close_timeout),
        **settings,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(_serve(server, sock))
    while not server.started:
        if task.done():
            task.result()  # raises what stopped uvicorn
            raise RuntimeError("uvicorn stopped during startup; see the server log")
        await asyncio.sleep(STARTUP_POLL)
    return StartedUvicorn(server, task, host, close_timeout)
