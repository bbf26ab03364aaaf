"""``raw``: WebSocket with no WebSocket library — asyncio streams + :mod:`course_ws.rfc6455`.

Chapter 01 takes the protocol apart byte by byte; this module puts it back
together as a server that real clients (a browser, the ``websockets`` client)
talk to. The split is the one ``websockets`` itself uses: the codec decides
*what* to answer, this module only moves bytes between a socket and the codec,
and owns the clocks (handshake timeout, keepalive, closing handshake).

========================================  ==============================================
the client...                             the server...
========================================  ==============================================
sends nothing within HANDSHAKE_TIMEOUT    answers ``408`` and hangs up
sends a head that is not HTTP             answers ``400`` naming what is wrong
sends a target that is not a path or URL  answers ``400`` naming what is wrong
omits Host (or sends two) in HTTP/1.1     answers ``400``
``GET /healthz``                          answers ``200 ok``
``GET /metrics``                          answers the Prometheus metrics
asks for any path but ``/echo``           answers ``404`` before any upgrade
upgrades ``/echo`` with another method    answers ``405`` with ``Allow: GET``
upgrades ``/echo`` without a header       answers ``400`` naming the header
upgrades with a version other than 13     answers ``426`` with ``Sec-WebSocket-Version: 13``
upgrades ``/echo`` correctly              answers ``101`` (no extension, even if offered)
sends a text / binary message             sends it back as one text / binary frame
fragments a message                       reassembles it, sends it back in one frame
sends PING                                answers PONG with the same payload
sends an unsolicited PONG                 ignores it
sends CLOSE with a code and reason        answers CLOSE with the same code and reason
sends CLOSE without a code                answers an empty CLOSE, hangs up
breaks a framing rule                     sends CLOSE 1002, hangs up
sends text that is not UTF-8              sends CLOSE 1007, hangs up
sends a message over ``max_size``         sends CLOSE 1009, hangs up
sends a message in over 1024 fragments    sends CLOSE 1009, hangs up
floods frames (empty continuations...)    is decoded 4 KiB at a time: others get turns
ignores a keepalive PING too long         sends CLOSE 1011, hangs up
is connected when the server stops        gets CLOSE 1001 (going away)
does not answer our CLOSE in time         is dropped after CLOSE_TIMEOUT
vanishes without a close frame            is logged at INFO, one line
========================================  ==============================================

Every wait is bounded, every write goes through ``drain()`` (a client that
reads slowly slows down only its own connection), and logs go to the
``course_ws.servers.raw`` logger.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import secrets
import socket
from collections.abc import Sequence

from course_ws.chat.metrics import ServerMetrics
from course_ws.options import BACKLOG, ServeOptions
from course_ws.rfc6455 import (
    MAX_CLOSE_REASON,
    CloseCode,
    Frame,
    FrameDecoder,
    HandshakeError,
    HttpHeadReader,
    MessageAssembler,
    Opcode,
    ProtocolError,
    build_close,
    build_error_response,
    build_response,
    check_host,
    encode_frame,
    parse_close,
    parse_request,
    split_target,
    validate_request,
)

__all__ = ["CLOSE_TIMEOUT", "HANDSHAKE_TIMEOUT", "RawConnection", "RunningRaw", "State", "start"]

logger = logging.getLogger("course_ws.servers.raw")

HANDSHAKE_TIMEOUT = 10.0
"""Seconds a client has to send its whole HTTP request (slowloris protection)."""

CLOSE_TIMEOUT = 5.0
"""Seconds to wait for the peer's part of a closing handshake before dropping TCP."""

READ_SIZE = 65536
"""Bytes asked of the socket at a time: the most one read can add to our buffers."""

TURN_SIZE = 4096
"""Bytes decoded between two yields to the event loop, so that no client hogs it.

A read can return 64 KiB of 6-byte frames (empty continuations, pings): about
11,000 frames, some 50 ms of work during which every other client waits, and
``read()`` does not yield while data is buffered. 4 KiB is at most 683 frames,
a couple of milliseconds."""

ECHO_PATH = "/echo"
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"


class State(enum.Enum):
    """Where one connection is in its life; it only ever moves down this list."""

    CONNECTING = "connecting"  # reading the HTTP request
    OPEN = "open"  # frames flow both ways
    CLOSING = "closing"  # we sent CLOSE: waiting for the peer's
    CLOSED = "closed"  # TCP is closed, or being closed


class RawConnection:
    """One client, from its first HTTP byte to the closed socket.

    :meth:`serve` runs the whole life of the connection in the task that
    asyncio created for it. Two other tasks may act on it: the keepalive
    task (pings) and :meth:`RunningRaw.aclose` (1001). Both only *write* a
    frame and move the state; reading stays in one place.
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        options: ServeOptions,
        *,
        handshake_timeout: float,
        close_timeout: float,
        metrics: ServerMetrics,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.options = options
        self.handshake_timeout = handshake_timeout
        self.close_timeout = close_timeout
        self.metrics = metrics
        self._open_counted = False  # counted in metrics.connections: uncount once at the end
        self.state = State.CONNECTING
        self.task: asyncio.Task[None] | None = None
        host, port = (writer.get_extra_info("peername") or ("?", 0))[:2]
        self.peer = f"{host}:{port}"
        # Set while frames flow; rescheduled to "now + close_timeout" once we send CLOSE.
        self._deadline: asyncio.Timeout | None = None
        self._pong: tuple[bytes, asyncio.Future[float]] | None = None  # the ping in flight
        self._eof_sent = False
        self._stopping = False  # going_away() came during the handshake

    # -- the life of a connection -------------------------------------------------

    async def serve(self) -> None:
        """Handshake, then echo frames until the connection ends; only cancellation escapes."""
        self.task = asyncio.current_task()
        try:
            received = await self._handshake()
            if received is not None:
                await self._exchange_frames(received)
        except OSError as exc:
            # Resets and broken pipes are routine on a network, not server bugs.
            logger.info("%s connection lost: %s", self.peer, exc or type(exc).__name__)
        except Exception:
            logger.exception("%s unexpected error: closing with 1011", self.peer)
            self._send_close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            if self._open_counted:
                self.metrics.connections.dec()
            self.state = State.CLOSED
            # Release the socket whatever happened. After a graceful close this
            # does nothing; otherwise it drops what the peer could not receive.
            self.writer.transport.abort()

    def going_away(self) -> None:
        """The server is stopping: tell the client with 1001 (or drop a half-sent request)."""
        if self.state is State.CONNECTING:
            self._stopping = True
            self.writer.transport.abort()  # the handshake's read() returns b"" at once
        elif self.state is State.OPEN:
            self._send_close(CloseCode.GOING_AWAY, "server shutting down")

    # -- HTTP: the opening handshake ----------------------------------------------

    async def _handshake(self) -> bytes | None:
        """Read and answer the HTTP request; return the bytes after its head if upgraded."""
        head_reader = HttpHeadReader()
        try:
            async with asyncio.timeout(self.handshake_timeout):
                result = None
                while result is None:
                    data = await self.reader.read(READ_SIZE)
                    if not data:
                        why = "server shutting down" if self._stopping else "client hung up"
                        logger.info("%s %s during the handshake", self.peer, why)
                        return None
                    result = head_reader.feed(data)  # may raise 431: head too large
        except TimeoutError:
            reason = f"no complete request within {self.handshake_timeout:g} s"
            logger.info("%s sent %s", self.peer, reason)
            await self._respond(408, reason)
            return None
        except HandshakeError as exc:
            logger.info("%s refused: %s", self.peer, exc)
            await self._respond(exc.status, exc.reason, exc.headers)
            return None

        head, received = result
        try:
            request = parse_request(head)
            path, _ = split_target(request.path)  # the query string doesn't choose the route
            check_host(request)
            if path in (HEALTH_PATH, METRICS_PATH):
                if request.method != "GET":
                    raise HandshakeError(
                        405, f"{request.method} {path}: use GET", [("Allow", "GET")]
                    )
                page = "ok" if path == HEALTH_PATH else self.metrics.render().decode().rstrip()
                await self._respond(200, page)
                return None
            if path != ECHO_PATH:
                raise HandshakeError(404, f"no WebSocket endpoint at {path}")
            key = validate_request(request)
        except HandshakeError as exc:
            logger.info("%s refused: %s", self.peer, exc)
            await self._respond(exc.status, exc.reason, exc.headers)
            return None

        # build_response never adds Sec-WebSocket-Extensions: a browser's offer of
        # permessage-deflate is declined simply by not mentioning it.
        self.writer.write(build_response(key))
        await self.writer.drain()
        self.state = State.OPEN
        self.metrics.connections.inc()
        self._open_counted = True
        logger.info("%s connection open", self.peer)
        return received

    async def _respond(
        self, status: int, text: str, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Send a plain-text HTTP response (``Connection: close``) and hang up."""
        if status >= 400:
            self.metrics.refused(status)
        self.writer.write(build_error_response(status, text, extra_headers=headers))
        await self._hang_up()

    # -- WebSocket: frames ----------------------------------------------------------

    async def _exchange_frames(self, received: bytes) -> None:
        """Echo messages until a closing handshake, a protocol error or a lost peer."""
        keepalive = None
        if self.options.ping_interval is not None:
            keepalive = asyncio.create_task(
                self._keepalive(self.options.ping_interval, self.options.ping_timeout)
            )
        try:
            async with asyncio.timeout(None) as self._deadline:
                await self._receive_until_closed(received)
        except TimeoutError:
            logger.info(
                "%s did not answer our close frame within %g s: dropping it",
                self.peer,
                self.close_timeout,
            )
            return  # serve() aborts the transport
        finally:
            self._deadline = None
            if keepalive is not None:
                keepalive.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keepalive
        await self._hang_up()

    async def _receive_until_closed(self, received: bytes) -> None:
        """Feed bytes to the codec and act on each frame; return when it's time to hang up."""
        decoder = FrameDecoder(role="server", max_size=self.options.max_size)
        # The assembler also caps fragments per message (MAX_FRAGMENTS, 1009) and
        # holds a message's payload in one buffer: a flood of tiny or empty
        # continuation frames costs neither unbounded memory nor a message forever.
        assembler = MessageAssembler(max_size=self.options.max_size)
        data = received
        while True:
            for start in range(0, len(data), TURN_SIZE):
                try:
                    for frame in decoder.feed(data[start : start + TURN_SIZE]):
                        if self._on_frame(frame, assembler):
                            return
                except ProtocolError as exc:
                    # "Fail the WebSocket connection" (§7.1.7): say why, then stop
                    # reading frames — the decoder is dead after a protocol error.
                    logger.info("%s broke the protocol: %s", self.peer, exc)
                    self._send_close(exc.code, exc.reason)
                    return
                await asyncio.sleep(0)  # fairness: let other clients in (TURN_SIZE)
            await self.writer.drain()  # backpressure: a slow reader slows only itself
            data = await self.reader.read(READ_SIZE)
            if not data:
                if self.state is State.OPEN:
                    logger.info("%s left without a close frame (1006)", self.peer)
                return

    def _on_frame(self, frame: Frame, assembler: MessageAssembler) -> bool:
        """Answer one frame; return True once the closing handshake is complete."""
        if frame.opcode is Opcode.PING:
            self._send(Opcode.PONG, frame.payload)
        elif frame.opcode is Opcode.PONG:
            # Unsolicited pongs are allowed (a one-way heartbeat) and ignored.
            if self._pong is not None and frame.payload == self._pong[0]:
                waiter = self._pong[1]
                if not waiter.done():
                    waiter.set_result(asyncio.get_running_loop().time())
        elif frame.opcode is Opcode.CLOSE:
            close = parse_close(frame.payload)  # a malformed payload raises ProtocolError
            if self.state is State.OPEN:
                logger.info("%s closed the connection: %s", self.peer, close)
                # §5.5.1: echo the status code (and, like websockets, the reason);
                # a close without a code gets an empty close back.
                self._send_close(close.code, close.reason)
            else:
                logger.info("%s answered our close frame: %s", self.peer, close)
            return True
        else:
            message = assembler.feed(frame)
            # After our CLOSE, data still gets checked but no longer answered (§5.5.1).
            if message is not None and self.state is State.OPEN:
                if isinstance(message, str):
                    self._send(Opcode.TEXT, message.encode())
                else:
                    self._send(Opcode.BINARY, message)
        return False

    async def _keepalive(self, interval: float, timeout: float | None) -> None:
        """Ping every ``interval`` seconds; close with 1011 if a pong takes over ``timeout``.

        A peer that vanished without a word (laptop lid closed, NAT entry
        expired) leaves a TCP connection that looks open forever; only
        traffic reveals it. Same rhythm as ``websockets``: the next ping
        leaves ``interval`` after the previous one, minus its round trip.
        """
        loop = asyncio.get_running_loop()
        latency = 0.0
        while self.state is State.OPEN:
            await asyncio.sleep(interval - latency)
            if self.state is not State.OPEN:
                return
            payload = secrets.token_bytes(4)
            pong: asyncio.Future[float] = loop.create_future()
            self._pong = (payload, pong)
            sent = loop.time()
            self._send(Opcode.PING, payload)
            if timeout is None:
                continue
            try:
                async with asyncio.timeout(timeout):
                    latency = await pong - sent
            except TimeoutError:
                logger.info("%s did not answer a ping within %g s: closing", self.peer, timeout)
                self._send_close(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                return

    # -- writing ------------------------------------------------------------------

    def _send(self, opcode: Opcode, payload: bytes) -> None:
        """Queue one unmasked frame (servers never mask); drain() happens in the reading loop.

        One ``write()`` per frame keeps frames whole even when the keepalive
        task and the reading loop both send.
        """
        if self._eof_sent or self.writer.is_closing():
            return  # too late to say anything
        self.writer.write(encode_frame(opcode, payload))

    def _send_close(self, code: int | None, reason: str = "") -> None:
        """Send CLOSE once, enter CLOSING, and give the peer CLOSE_TIMEOUT to answer."""
        if self.state is not State.OPEN:
            return
        reason = reason.encode()[:MAX_CLOSE_REASON].decode(errors="ignore")
        self._send(Opcode.CLOSE, build_close(code, reason))
        self.state = State.CLOSING
        if self._deadline is not None:
            self._deadline.reschedule(asyncio.get_running_loop().time() + self.close_timeout)

    async def _hang_up(self) -> None:
        """Close TCP so that our last bytes arrive: FIN, wait for the peer's FIN, close.

        Closing a socket that still has unread incoming bytes makes the kernel
        send RST instead of FIN, and an RST can destroy our last frame or
        response before the peer reads it (think of a 1009 sent while the
        peer is still uploading). So we half-close (``write_eof``), discard
        whatever the peer still sends until it closes too, then close —
        giving up after CLOSE_TIMEOUT, when serve() drops the connection.
        """
        self.state = State.CLOSED
        try:
            async with asyncio.timeout(self.close_timeout):
                if self.writer.can_write_eof():
                    self.writer.write_eof()
                self._eof_sent = True
                while await self.reader.read(READ_SIZE):
                    pass
                self.writer.close()
                await self.writer.wait_closed()
        except TimeoutError:
            logger.info("%s did not close its side within %g s", self.peer, self.close_timeout)
        except OSError:
            pass  # the peer is gone already: nothing left to do politely
        else:
            logger.info("%s connection closed", self.peer)


class RunningRaw:
    """The started ``raw`` server; :meth:`aclose` says 1001 to every client."""

    def __init__(
        self, options: ServeOptions, *, handshake_timeout: float, close_timeout: float
    ) -> None:
        self.options = options
        self.handshake_timeout = handshake_timeout
        self.close_timeout = close_timeout
        self.connections: set[RawConnection] = set()
        self.metrics = ServerMetrics()
        self._server: asyncio.Server | None = None
        self._closing = False

    async def listen(self, sock: socket.socket) -> None:
        """Accept connections on ``sock``, each served in its own task by :meth:`_on_client`."""
        # asyncio listen()s again on a given socket, with a backlog of 100 by default.
        self._server = await asyncio.start_server(self._on_client, sock=sock, backlog=BACKLOG)
        host, port = sock.getsockname()[:2]
        logger.info("server listening on %s:%s", host, port)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Called by asyncio in a new task for every accepted TCP connection."""
        connection = RawConnection(
            reader,
            writer,
            self.options,
            handshake_timeout=self.handshake_timeout,
            close_timeout=self.close_timeout,
            metrics=self.metrics,
        )
        if self._closing:  # accepted just before the listener closed
            writer.transport.abort()
            return
        self.connections.add(connection)
        try:
            await connection.serve()
        except asyncio.CancelledError:
            # Only aclose() cancels us, after CLOSE_TIMEOUT. Python 3.11's asyncio
            # logs a cancelled client_connected_cb task as an ERROR with a traceback
            # (fixed in 3.12), so this task ends normally: serve() has released the
            # socket already, and nobody awaits this task's result.
            logger.info("%s cancelled by the server's shutdown", connection.peer)
        finally:
            self.connections.discard(connection)

    async def aclose(self) -> None:
        """Stop listening, close every client with 1001, and return when all are gone.

        Each client gets CLOSE_TIMEOUT to answer; a connection still there
        after that (a bug, or a peer stuck in a write) is cancelled, so no
        task outlives the server.
        """
        self._closing = True
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            connection.going_away()
        tasks = [c.task for c in self.connections if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.close_timeout + 1)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        logger.info("server closed")


async def start(
    options: ServeOptions,
    sock: socket.socket,
    *,
    handshake_timeout: float | None = None,
    close_timeout: float | None = None,
) -> RunningRaw:
    """Serve ``/echo`` and ``GET /healthz`` on ``sock`` with asyncio streams.

    The timeouts default to the module's HANDSHAKE_TIMEOUT and CLOSE_TIMEOUT,
    read at call time so that a test can lower them with monkeypatch.
    """
    running = RunningRaw(
        options,
        handshake_timeout=HANDSHAKE_TIMEOUT if handshake_timeout is None else handshake_timeout,
        close_timeout=CLOSE_TIMEOUT if close_timeout is None else close_timeout,
    )
    await running.listen(sock)
    return running
