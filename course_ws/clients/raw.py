"""A blocking WebSocket client on a plain TCP socket, built on :mod:`course_ws.rfc6455`.

No asyncio, no ``websockets``: every byte that goes out or comes in passes
through code you can read, which makes this client a good microscope::

    with RawClient.connect("ws://127.0.0.1:8765/") as ws:
        print(ws.request_bytes.decode())   # the HTTP Upgrade request
        ws.send_text("hello")
        print(ws.recv())                   # assembled message
        ws.ping(b"are you there?")
        print(ws.recv_frame())             # PONG 'are you there?' [14 bytes]

It speaks ``ws://`` only (no TLS) and offers no extension, so servers never
compress what they send it.  It is single-threaded: don't share an instance
between threads.
"""

from __future__ import annotations

import contextlib
import socket
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import NoReturn, Self
from urllib.parse import urlsplit

from course_ws.rfc6455 import (
    MAX_CONTROL_PAYLOAD,
    Close,
    CloseCode,
    Frame,
    FrameDecoder,
    HandshakeError,
    HttpHeadReader,
    MessageAssembler,
    Opcode,
    ProtocolError,
    build_close,
    build_request,
    check_response,
    encode_frame,
    generate_mask,
    parse_close,
)

__all__ = [
    "DEFAULT_MAX_SIZE",
    "RFC_EXAMPLE_KEY",
    "ConnectionClosed",
    "RawClient",
    "upgrade_request",
]

DEFAULT_MAX_SIZE = 16 * 2**20
"""Largest frame and message accepted: 16 MiB, well above servers' usual 1 MiB."""

RFC_EXAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
"""RFC 6455's example Sec-WebSocket-Key, whose accept value is ``s3pPLMBiTxaQ9kYGzzhZRbK+xOo=``."""

_RECV_SIZE = 65536


class ConnectionClosed(Exception):
    """The WebSocket connection is closed; ``code`` and ``reason`` say why.

    ``code`` is what the server sent, None if its close frame had no code, or
    1006 (ABNORMAL_CLOSURE) if the TCP connection ended without a close frame.
    """

    def __init__(self, code: int | None, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"connection closed: {Close(code, reason)}")


class RawClient:
    """A WebSocket connection whose opening handshake succeeded.

    Create it with :meth:`connect`.  ``request_bytes`` and ``response_bytes``
    keep the handshake exactly as it went over the wire, for display.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        request_bytes: bytes,
        response_bytes: bytes,
        received: bytes = b"",
        max_size: int | None = DEFAULT_MAX_SIZE,
    ) -> None:
        """Wrap a socket right after the handshake; ``received`` is what came after the 101."""
        self.request_bytes = request_bytes
        self.response_bytes = response_bytes
        self._sock = sock
        self._decoder = FrameDecoder(role="client", max_size=max_size)
        self._assembler = MessageAssembler(max_size=max_size)
        self._frames: deque[Frame] = deque()
        self._close_sent = False
        self._closed: Close | None = None  # set once the socket is closed
        self._server_close: Frame | None = None  # the server's CLOSE, once recv_frame saw it
        self._receive(received)

    @classmethod
    def connect(
        cls,
        url: str,
        *,
        timeout: float = 5.0,
        origin: str | None = None,
        max_size: int | None = DEFAULT_MAX_SIZE,
    ) -> Self:
        """Open a TCP connection to a ``ws://`` URL and perform the handshake.

        ``timeout`` applies to connecting and to every later socket
        operation: a :meth:`recv` that waits longer raises TimeoutError.
        Raises HandshakeError if the server refuses or answers nonsense.
        """
        parts = urlsplit(url)
        if parts.scheme != "ws":
            raise ValueError(f"only ws:// URLs are supported, got {url!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        # The Host header is the URL's host[:port], without any user:password@.
        request, key = build_request(parts.netloc.rpartition("@")[2], path, origin=origin)

        sock = socket.create_connection((parts.hostname, parts.port or 80), timeout=timeout)
        try:
            sock.sendall(request)
            reader = HttpHeadReader()
            result = None
            while result is None:
                data = sock.recv(_RECV_SIZE)
                if not data:
                    raise HandshakeError(502, "connection closed during the opening handshake")
                result = reader.feed(data)
            response, received = result
            check_response(response, key)
            return cls(
                sock,
                request_bytes=request,
                response_bytes=response,
                received=received,
                max_size=max_size,
            )
        except BaseException:
            sock.close()
            raise

    @property
    def timeout(self) -> float | None:
        """Seconds a send or receive may block before TimeoutError; None: forever."""
        return self._sock.gettimeout()

    @timeout.setter
    def timeout(self, seconds: float | None) -> None:
        self._sock.settimeout(seconds)

    # -- Sending ---------------------------------------------------------------

    def send_frame(self, opcode: Opcode | int, payload: bytes, *, fin: bool = True) -> bytes:
        """Send one frame, masked with a fresh key; return the bytes sent.

        This is the raw escape hatch: it sends exactly what you ask, even a
        frame the RFC forbids, to see how a server reacts.
        """
        self._check_open()
        data = encode_frame(opcode, payload, fin=fin, mask=generate_mask())
        self._sock.sendall(data)
        return data

    def send_text(self, text: str) -> None:
        """Send a text message in a single frame."""
        self.send_frame(Opcode.TEXT, text.encode())

    def send_binary(self, data: bytes) -> None:
        """Send a binary message in a single frame."""
        self.send_frame(Opcode.BINARY, data)

    def send_fragmented(self, parts: Sequence[bytes], opcode: Opcode = Opcode.TEXT) -> None:
        """Send one message as several frames: ``opcode`` first, then CONT frames.

        For text, the parts are bytes so that a character can be split
        between fragments, which the receiver must accept.
        """
        if not parts:
            raise ValueError("a message needs at least one fragment")
        last = len(parts) - 1
        for index, part in enumerate(parts):
            self.send_frame(opcode if index == 0 else Opcode.CONT, part, fin=index == last)

    def ping(self, payload: bytes = b"") -> None:
        """Send a PING; the server answers with a PONG carrying the same payload."""
        if len(payload) > MAX_CONTROL_PAYLOAD:
            raise ValueError(f"ping payload is limited to {MAX_CONTROL_PAYLOAD} bytes")
        self.send_frame(Opcode.PING, payload)

    # -- Receiving -------------------------------------------------------------

    def recv_frame(self) -> Frame:
        """Return the next frame as received, control frames included.

        Nothing is answered automatically: that is :meth:`recv`'s job.
        Raises TimeoutError if nothing arrives in time (the partial frame,
        if any, stays buffered), ConnectionClosed if the connection is over,
        and ProtocolError — after closing with its code — if the server broke
        the framing rules.
        """
        while not self._frames:
            self._check_open()
            data = self._sock.recv(_RECV_SIZE)
            if not data:
                self._finish(Close(CloseCode.ABNORMAL_CLOSURE, ""))
                raise ConnectionClosed(CloseCode.ABNORMAL_CLOSURE)
            self._receive(data)
        frame = self._frames.popleft()
        if frame.opcode is Opcode.CLOSE:
            self._server_close = frame  # close() must answer it, not wait for another
        return frame

    def recv(self) -> str | bytes:
        """Return the next message: ``str`` for text, ``bytes`` for binary.

        Meanwhile, PINGs are answered with PONGs and PONGs are skipped.  When
        the server closes, its close frame is echoed back as the closing
        handshake requires, the socket is closed and ConnectionClosed is
        raised with the server's code and reason.
        """
        while True:
            frame = self.recv_frame()
            if frame.opcode is Opcode.PING:
                self.send_frame(Opcode.PONG, frame.payload)
            elif frame.opcode is Opcode.CLOSE:
                close = self._answer_close(frame)
                raise ConnectionClosed(close.code, close.reason)
            elif frame.opcode is not Opcode.PONG:
                try:
                    message = self._assembler.feed(frame)
                except ProtocolError as exc:
                    self._fail(exc)
                if message is not None:
                    return message

    # -- Closing ---------------------------------------------------------------

    def close(self, code: int = CloseCode.NORMAL_CLOSURE, reason: str = "") -> Close:
        """Perform the closing handshake; return the server's code and reason.

        Sends a close frame, discards messages until the server's close frame
        arrives, then closes the socket.  Once the connection is over (closed
        by either side, failed, or lost), it just returns how it ended.
        """
        if self._closed is not None:
            return self._closed
        if self._server_close is not None:  # the server closed first: just answer
            return self._answer_close(self._server_close)
        payload = build_close(code, reason)  # validate before sending anything
        try:
            self._send_close(payload)
            while (frame := self.recv_frame()).opcode is not Opcode.CLOSE:
                pass
            close = self._parse_close(frame)
        except BaseException:
            if self._closed is None:  # e.g. a timeout, not a failure already handled
                self._finish(Close(CloseCode.ABNORMAL_CLOSURE, ""))
            raise
        self._finish(close)
        return close

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Close politely; if the block failed, don't let a failing close hide why."""
        if exc_type is None:
            self.close()
        else:
            with contextlib.suppress(OSError, ConnectionClosed, ProtocolError):
                self.close()

    # -- Internals -------------------------------------------------------------

    def _receive(self, data: bytes) -> None:
        """Decode received bytes into the queue of frames."""
        try:
            self._frames.extend(self._decoder.feed(data))
        except ProtocolError as exc:
            self._fail(exc)

    def _parse_close(self, frame: Frame) -> Close:
        try:
            return parse_close(frame.payload)
        except ProtocolError as exc:
            self._fail(exc)

    def _answer_close(self, frame: Frame) -> Close:
        """Reply to the server's close frame, echoing its code (§5.5.1), and finish."""
        close = self._parse_close(frame)
        # An impolite server may have hung up already: nothing to answer then.
        with contextlib.suppress(OSError):
            self._send_close(build_close(close.code))
        self._finish(close)
        return close

    def _send_close(self, payload: bytes) -> None:
        self._sock.sendall(encode_frame(Opcode.CLOSE, payload, mask=generate_mask()))
        self._close_sent = True

    def _fail(self, exc: ProtocolError) -> NoReturn:
        """Fail the connection (§7.1.7): say why if we still can, hang up, re-raise."""
        if not self._close_sent:
            with contextlib.suppress(OSError):
                self._send_close(build_close(exc.code, exc.reason))
        self._finish(Close(exc.code, exc.reason))
        raise exc

    def _finish(self, close: Close) -> None:
        self._closed = close
        self._frames.clear()
        self._sock.close()

    def _check_open(self) -> None:
        if self._closed is not None:
            raise ConnectionClosed(*self._closed)


def upgrade_request(url: str, target: str, method: str = "GET", **changes: str | None) -> bytes:
    """The bytes of a valid handshake request for ``target``, changed as asked and unchecked.

    For sending a server what no client would: unlike
    :func:`course_ws.rfc6455.build_request`, ``target`` and ``method`` go out as
    given, and each of ``changes`` replaces a header (``Sec_WebSocket_Version="8"``:
    underscores become dashes) or removes it (``Host=None``). The ``Host`` header is
    the host and port of ``url`` (``ws://127.0.0.1:8765``); the key is
    :data:`RFC_EXAMPLE_KEY`.
    """
    headers: dict[str, str] = {
        "Host": urlsplit(url).netloc.rpartition("@")[2],
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": RFC_EXAMPLE_KEY,
        "Sec-WebSocket-Version": "13",
    }
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            del headers[name]
        else:
            headers[name] = value
    lines = [f"{method} {target} HTTP/1.1", *(f"{n}: {v}" for n, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
