"""The chat on any ASGI stack: plumbing shared by the raw ASGI, Starlette and FastAPI adapters.

Those stacks give a server ``await send`` and nothing else, so every member
gets a bounded :class:`~course_ws.fanout.outbox.Outbox`
(:func:`~course_ws.servers._asgi_host.asgi_outbox`) and the room's fan-out
only *offers* each event to the members' outboxes (:class:`OutboxFanout`):
it never waits, and a member that falls too far behind is closed with 1013,
aborted if it does not answer within the close timeout.

What the chat decides (admission, the member session, close codes, texts)
stays in :mod:`course_ws.chat`; what is left here is stack plumbing:

- :func:`request_target` / :func:`check_request`: the request target and
  ``Host`` of an ASGI scope, checked by :mod:`course_ws.rfc6455` like the
  ``raw`` and ``websockets`` servers check theirs;
- :class:`RequestCheck`: that check as ASGI middleware, for the framework adapters
  (Starlette, FastAPI), whose routing would otherwise see a target it cannot parse;
  it also reads each request body first, bounded (:func:`read_body`), so that
  no framework ever buffers an unbounded body;
- :func:`run_member` / :func:`serve_member`: welcome, replay, frames in, actions
  out, for one member; :func:`serve_echo`: the echo endpoint;
- :func:`close_for_certain`: a close that ends the connection within a deadline;
- :func:`start_chat_app`: the course's uvicorn host with the chat's settings.

The welcome and the replay are sent *directly* (``await send``), not through
the outbox: a full history (``--history-size`` messages, ``--history-bytes``)
may be larger than the outbox's limit, which is sized for live traffic. They
cannot overtake or interleave with live events, because the member joins the
room's fan-out only after the last of them went out; a member that does not
read them within the join timeout is closed with 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from importlib.resources import files

from course_ws import rfc6455
from course_ws.chat.admission import Admitted, chat_room
from course_ws.chat.metrics import ServerMetrics
from course_ws.chat.protocol import MAX_POST_BYTES
from course_ws.chat.ratelimit import client_address
from course_ws.chat.service import CannotJoin, ChatService
from course_ws.chat.session import Close, CloseCode, Reply
from course_ws.fanout.outbox import Outbox, OutboxState
from course_ws.options import ServeOptions
from course_ws.servers._asgi_host import (
    ASGIApp,
    Message,
    Receive,
    Scope,
    Send,
    StartedUvicorn,
    asgi_outbox,
    close_websocket,
    hosted_connection,
    refuse,
    start_asgi_app,
)

logger = logging.getLogger("course_ws.servers.asgi")

Member = Outbox[str | bytes]
"""A member of a room, as the room's fan-out sees it: its outbox."""
CloseWith = Callable[[int, str], Awaitable[None]]

PAGE = files("course_ws") / "static" / "chat.html"
"""The browser chat page every ASGI adapter serves at ``GET /``."""
NOT_READING = "too slow: you send, but do not read the replies"

KERNEL_SEND_BUFFER = 64 * 1024
"""SO_SNDBUF for each member (the kernel doubles it), as the ``websockets`` chat sets it:
left alone, Linux lets it grow to megabytes before the outbox even sees a backlog."""


class OutboxFanout:
    """The chat's fan-out on ASGI: offer each event to every member's outbox, never wait.

    A member whose outbox refuses an event because it just went over its limit
    is counted once in ``course_ws_members_dropped{code="1013"}``.
    """

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def __call__(self, members: Collection[Member], event: str) -> None:
        for outbox in list(members):
            self.offer(outbox, event)

    def close(self, members: Collection[Member], code: int, reason: str) -> None:
        """Start closing each member's connection with ``code``, for certain (in the background)."""
        for outbox in list(members):
            outbox.end(code, reason)

    def offer(self, outbox: Member, event: str) -> bool:
        """Offer ``event`` to one member; count the drop if this made it too slow."""
        was_open = outbox.state is OutboxState.OPEN
        if outbox.offer(event):
            return True
        if was_open and outbox.state is OutboxState.TOO_SLOW:
            self.metrics.dropped(CloseCode.TRY_AGAIN_LATER)
        return False


# -- the request, checked like every other server checks it --------------------------------


def request_target(scope: Scope) -> str:
    """The request target as the client sent it (path and query), from an ASGI scope.

    ``raw_path`` is the path before any percent-decoding; for a WebSocket on
    uvicorn it is everything before the ``?`` of the request line, so an
    absolute-form or malformed target reaches :func:`rfc6455.split_target` intact.
    """
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


def codec_request(scope: Scope) -> rfc6455.Request:
    """The scope as :mod:`course_ws.rfc6455` sees a request (names lowercased, repeats joined)."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", []):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    major, _, minor = str(scope.get("http_version", "1.1")).partition(".")
    version = (int(major), int(minor or 0)) if major.isdigit() and minor.isdigit() else (1, 1)
    method = scope.get("method", "GET")
    return rfc6455.Request(method, request_target(scope), version, headers)


def check_request(scope: Scope) -> tuple[str, rfc6455.HandshakeError | None]:
    """The path of the request, or the error to refuse it with: a bad target or Host (400)."""
    request = codec_request(scope)
    try:
        path, _ = rfc6455.split_target(request.path)
        rfc6455.check_host(request)
    except rfc6455.HandshakeError as error:
        return scope.get("path", ""), error
    return path, None


def is_websocket_path(path: str) -> bool:
    """Whether ``path`` is one of the chat servers' WebSocket endpoints (the room rule, once)."""
    return path == "/echo" or chat_room(path) is not None


BODY_TIMEOUT = 10.0
"""Seconds a client may take to send a request body (a slow body holds a connection)."""


class BodyRefused(Exception):
    """A request body that was not read: too large (413) or too slow (408)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


async def read_body(scope: Scope, receive: Receive, limit: int = MAX_POST_BYTES) -> bytes | None:
    """The body of an HTTP request, read in full, or ``None`` if the client left meanwhile.

    Raises :class:`BodyRefused` for a body over ``limit`` bytes (declared in
    ``Content-Length`` or counted as it arrives: nothing beyond ``limit`` is
    kept) or not complete within :data:`BODY_TIMEOUT` seconds.
    """
    declared = codec_request(scope).headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyRefused(413, f"a request body is at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                chunk = bytes(message.get("body", b""))
                size += len(chunk)
                if size > limit:
                    raise BodyRefused(413, f"a request body is at most {limit} bytes")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise BodyRefused(408, f"the request body took over {BODY_TIMEOUT:g} s") from None


async def respond_text(
    send: Send, status: int, text: str, headers: Collection[tuple[str, str]] = ()
) -> None:
    """A complete plain-text HTTP response."""
    body = text.encode()
    head = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        *((n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in headers),
    ]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class RequestCheck:
    """ASGI middleware: refuse a bad request target or ``Host`` with 400 before any routing.

    The raw ASGI adapter checks each request itself (:func:`check_request`);
    a framework's router would match on ``scope["path"]`` and never notice a
    target that is not a URL, or a missing ``Host``. Every refusal is counted.

    It also reads every HTTP request's body before the app sees the request
    (:func:`read_body`: at most ``MAX_POST_BYTES``, within ``BODY_TIMEOUT``)
    and hands it on in one piece: a framework's ``await request.body()`` or
    FastAPI's body models would otherwise buffer whatever a client sends.
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path, error = check_request(scope)
        if error is not None:
            logger.info("refused %s %.80s: %s", scope.get("method", "WebSocket"), path, error)
            self.metrics.refused(error.status)
            text = f"{error.reason}\n"
            if scope["type"] == "http":
                await respond_text(send, error.status, text, error.headers)
            elif (await receive())["type"] == "websocket.connect":  # else the client left
                await refuse(scope, send, error.status, text, error.headers)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(scope, receive)
        except BodyRefused as refused:
            logger.info("refused %s %.80s: %s", scope["method"], path, refused.reason)
            self.metrics.refused(refused.status)
            await respond_text(send, refused.status, f"{refused.reason}\n")
            return
        if body is not None:  # else the client left while sending it
            await self.app(scope, replay_body(body, receive), send)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` as one ``http.request``, then defers to ``receive``."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive_replayed() -> Message:
        return pending.pop() if pending else await receive()

    return receive_replayed


def peer_address(scope: Scope, trusted_proxy: Collection[str]) -> str:
    """The client address that per-address limits apply to."""
    client = scope.get("client")
    peer = str(client[0]) if client else None
    forwarded = codec_request(scope).headers.get("x-forwarded-for")
    return client_address(peer, forwarded, tuple(trusted_proxy))


# -- one member ------------------------------------------------------------------------------


async def frames(receive: Receive) -> AsyncIterator[str | bytes]:
    """The frames of an accepted ASGI WebSocket, until ``websocket.disconnect``."""
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.disconnect":
            return
        if kind == "websocket.receive":
            text = message.get("text")
            yield text if text is not None else bytes(message.get("bytes") or b"")


def cap_send_buffer(scope: Scope) -> None:
    """Bound the kernel's send buffer of this connection (see :data:`KERNEL_SEND_BUFFER`)."""
    hosted = hosted_connection(scope)
    sock = hosted.tcp_socket if hosted is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, KERNEL_SEND_BUFFER)


async def close_for_certain(
    scope: Scope, send: Send, code: int, reason: str, timeout: float
) -> None:
    """Close with ``code``; abort the TCP connection if that is not over within ``timeout`` s.

    On uvicorn a close frame waits behind data a stalled reader never takes:
    without the abort, ``websocket.close`` could wait forever.
    """
    try:
        async with asyncio.timeout(timeout):
            await close_websocket(scope, send, code, reason)
    except TimeoutError:
        hosted = hosted_connection(scope)
        logger.info("aborting a WebSocket: closing with %d took over %g s", code, timeout)
        if hosted is not None:
            hosted.abort()


async def run_member(
    service: ChatService[Member],
    fanout: OutboxFanout,
    admitted: Admitted,
    outbox: Member,
    incoming: AsyncIterator[str | bytes],
    send_text: Callable[[str], Awaitable[None]],
    close: CloseWith,
) -> None:
    """One member of ``admitted.room``, from welcome to leave, on any ASGI stack.

    ``send_text`` writes one event at once (the welcome and replay go that way,
    see the module docstring); live events and replies go through ``outbox``;
    ``close(code, reason)`` carries out a close the session decides on, and
    returns once the connection is over (or aborted).
    """
    try:
        async with service.member(admitted, outbox, send_text) as session:
            async for frame in incoming:
                action = await service.handle(session, frame)
                if isinstance(action, Reply):
                    fanout.offer(outbox, action.event)  # in order with live events
                elif isinstance(action, Close):
                    await outbox.aclose()  # its writer must not send after the close frame
                    await close(action.code, action.reason)
                    return
    except CannotJoin as exc:
        service.metrics.dropped(CloseCode.TRY_AGAIN_LATER)
        await outbox.aclose()
        await close(CloseCode.TRY_AGAIN_LATER, exc.reason)
    except OSError as exc:  # ASGI 2.4: a send after the disconnect raises
        logger.info("%s left %s abruptly: %r", admitted.user, admitted.room, exc)


async def serve_member(
    scope: Scope,
    receive: Receive,
    send: Send,
    service: ChatService[Member],
    fanout: OutboxFanout,
    admitted: Admitted,
    close_timeout: float,
) -> None:
    """One accepted member on ASGI: its outbox, then :func:`run_member`.

    ``receive`` and ``send`` follow ASGI 2.4: ``send`` raises :class:`OSError`
    once the client is gone (the framework adapters wrap theirs to do so).
    """
    cap_send_buffer(scope)

    async def send_text(event: str) -> None:
        await send({"type": "websocket.send", "text": event})

    async def close(code: int, reason: str) -> None:
        await close_for_certain(scope, send, code, reason, close_timeout)

    async with asgi_outbox(
        scope,
        send,
        close_timeout=close_timeout,
        name=f"{admitted.user} in {admitted.room}",
    ) as outbox:
        await run_member(service, fanout, admitted, outbox, frames(receive), send_text, close)


class SendDeadline:
    """Sends for one connection; one that stays blocked ``send_timeout`` s ends it with 1013.

    The 1013 close is aborted after ``close_timeout``, which makes the blocked
    send raise (an :class:`OSError`). On the course's host the deadline is one
    timer per connection, started when the transport pauses
    (:meth:`~course_ws.servers._asgi_host.HostedConnection.on_send_stalled`);
    elsewhere each send gets its own ``asyncio.timeout``, which costs about
    4 µs a message (a quarter of an echo's own cost on uvicorn).
    """

    def __init__(
        self, scope: Scope, send: Send, metrics: ServerMetrics, options: ServeOptions
    ) -> None:
        self.scope = scope
        self._send = send
        self.metrics = metrics
        self.options = options
        self.hosted = hosted_connection(scope)
        self._dropping: asyncio.Task[None] | None = None
        if self.hosted is not None:
            self.hosted.on_send_stalled(options.send_timeout, self._drop)

    @property
    def dropped(self) -> bool:
        """Whether the deadline passed and the connection is being closed."""
        return self._dropping is not None

    def _drop(self) -> None:
        if self._dropping is not None:
            return
        self.metrics.dropped(CloseCode.TRY_AGAIN_LATER)
        self._dropping = asyncio.ensure_future(
            close_for_certain(
                self.scope,
                self._send,
                CloseCode.TRY_AGAIN_LATER,
                NOT_READING,
                self.options.close_timeout,
            )
        )

    async def send(self, message: Message) -> None:
        """Send ``message``; raises :class:`OSError` if the client is gone (or was dropped)."""
        if self.hosted is not None:
            await self._send(message)  # a stall drops the connection, and this raises
            return
        try:
            async with asyncio.timeout(self.options.send_timeout):
                await self._send(message)
        except TimeoutError:
            self._drop()
            raise ConnectionAbortedError(NOT_READING) from None

    async def aclose(self) -> None:
        """Wait for a 1013 close under way (``close_timeout`` at most)."""
        if self._dropping is not None:
            await self._dropping


async def serve_echo(
    scope: Scope,
    receive: Receive,
    send: Send,
    metrics: ServerMetrics,
    options: ServeOptions,
) -> None:
    """Send every message back as it came; 1013 for a client that does not read them.

    Replies blocked for ``options.send_timeout`` close the client with 1013,
    aborted after ``options.close_timeout`` (:class:`SendDeadline`).
    """
    deadline = SendDeadline(scope, send, metrics, options)
    # What ``frames`` does, inline, and ``send`` itself where the host keeps the deadline:
    # an echo is nothing but this loop, and each layer costs ~1 µs of a ~30 µs round trip.
    send_reply = send if deadline.hosted is not None else deadline.send
    try:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                if text is not None:
                    await send_reply({"type": "websocket.send", "text": text})
                else:
                    data = bytes(message.get("bytes") or b"")
                    await send_reply({"type": "websocket.send", "bytes": data})
            elif kind == "websocket.disconnect":
                return
    except OSError as exc:  # ASGI 2.4: a send after the disconnect raises
        if not deadline.dropped:
            logger.info("echo client %s left abruptly: %r", scope.get("client"), exc)
    finally:
        await deadline.aclose()


async def start_chat_app(
    app: ASGIApp, options: ServeOptions, sock: socket.socket, metrics: ServerMetrics | None = None
) -> StartedUvicorn:
    """Serve a chat ``app`` on ``sock`` through the course's uvicorn host (1001 on shutdown).

    ``options`` give ``ws_max_size`` and the keepalive; the close timeout bounds
    every close and the shutdown; the requests the host refuses before the
    app sees them are counted in ``metrics``, the app's. Compression is off, as
    in the ``chat`` server: small messages, many members, and deflate costs CPU
    per member per message.
    """
    return await start_asgi_app(
        app,
        options,
        sock,
        close_timeout=options.close_timeout,
        refused=(metrics or ServerMetrics()).refused,
        ws_per_message_deflate=False,
    )
