"""The bounded fan-out the ``websockets`` servers ship, and how they drop a member for certain.

A member that stops reading must cost the server a bounded amount of memory,
and must then be *gone*, not merely asked to go. ``websockets`` 17 makes the
second half harder than it looks (``websockets/asyncio/connection.py``, 17.4):

* every write from user code goes through ``send_context()``, which writes the
  frame, then ``await self.drain()`` (line 919); ``drain()`` (lines 1069–1085)
  waits while the transport is paused, that is while its write buffer is over
  the high-water mark (``write_limit``), and a client that reads nothing never
  brings it back under;
* ``close()`` sends its close frame through that same context (lines 643–650),
  so it waits in ``drain()`` *before* it reaches the close timeout
  (``asyncio.timeout_at(self.close_deadline)``, line 946) and the
  ``transport.abort()`` behind it (line 959): ``close(1013)`` never finishes;
* the keepalive ``ping()`` goes through it too (lines 703–717), and
  ``keepalive()`` awaits it (line 829) before its ``ping_timeout`` starts: while
  the server keeps writing, keepalive never notices the stalled client at all.

Hence :func:`close_for_certain`: the close handshake, bounded by the close
timeout, then an abortive close of the TCP connection. A server that writes
with ``await send`` (``echo``) bounds how long a write may stay blocked with
:func:`send_deadline`; one that writes without waiting (``chat``) bounds the
backlog with :class:`BoundedBroadcast`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable, Collection, Coroutine
from typing import Any, ClassVar

from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection, broadcast
from websockets.frames import CloseCode
from websockets.protocol import State

__all__ = [
    "SLOW_CLIENT_BUFFER",
    "TOO_SLOW",
    "BoundedBroadcast",
    "SendDeadlineConnection",
    "SlowClients",
    "close_for_certain",
    "logger",
    "send_deadline",
]

SLOW_CLIENT_BUFFER = 256 * 1024
"""Bytes waiting for one client before :class:`BoundedBroadcast` closes it (1013)."""
TOO_SLOW = "too slow: reconnect and resume"
"""The reason sent with 1013 to a member that fell too far behind."""
DEFAULT_CLOSE_TIMEOUT = 10.0
"""Seconds :func:`close_for_certain` allows a connection whose ``close_timeout`` is ``None``."""

logger = logging.getLogger("course_ws.servers.fanout")
"""Under ``course_ws.servers``, so a background server's drops land in its ``.logs``."""

_RESET_ON_CLOSE = struct.pack("ii", 1, 0)
"""``SO_LINGER`` on, zero seconds: closing the socket sends a RST and discards unsent data."""


def abort(connection: Connection) -> None:
    """End ``connection``'s TCP connection now, with a reset, and free its buffers.

    ``transport.abort()`` alone closes the file descriptor, but the kernel keeps
    an orphaned socket that still tries to deliver the unsent bytes to a peer
    that reads nothing, with the FIN queued behind them: the peer never learns
    that it was dropped, and the send buffer lingers for minutes. A zero
    linger time turns the close into a reset, which the peer sees at once.
    """
    transport = connection.transport
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: nothing to reset
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
    transport.abort()


async def close_for_certain(
    connection: Connection,
    code: int = CloseCode.TRY_AGAIN_LATER,
    reason: str = TOO_SLOW,
    timeout: float | None = None,
) -> None:
    """Close ``connection`` with ``code``, and abort it if that is not done within ``timeout``.

    ``timeout`` defaults to the connection's own ``close_timeout``. A peer that
    reads gets the close frame and answers: this is a normal close. A peer that
    stopped reading leaves ``close()`` waiting in ``drain()`` (see the module
    docstring); after ``timeout`` seconds its TCP connection is reset, which
    also ends the handler's pending ``recv`` or ``send`` with
    ``ConnectionClosedError``. Returns once the connection is closed.
    """
    if timeout is None:
        timeout = connection.close_timeout
    if timeout is None:
        timeout = DEFAULT_CLOSE_TIMEOUT
    try:
        async with asyncio.timeout(timeout):
            await connection.close(code, reason)
    except TimeoutError:
        logger.info(
            "aborting %s: close handshake not done in %g s", connection.remote_address, timeout
        )
        abort(connection)
        await connection.wait_closed()


class SlowClients:
    """Closes clients that fell too far behind with 1013, once each, in the background.

    Each close is :func:`close_for_certain`: within the connection's close
    timeout of being noticed, a stalled client's TCP connection is gone.
    """

    def __init__(self, on_close: Callable[[], None] | None = None) -> None:
        self._closing: set[asyncio.Task[None]] = set()
        self.on_close = on_close
        """Called once for each client closed (a metric, say)."""
        self.closed = 0
        """How many clients were closed for being too slow."""
        self.crossed_at: float | None = None
        """``time.monotonic()`` when the latest one was found over the limit (for tests)."""

    def close(self, connection: ServerConnection, waiting: int) -> None:
        """Start closing ``connection``, which has ``waiting`` bytes (or messages) unsent."""
        if connection.protocol.state is not State.OPEN:
            return  # already closing
        self.closed += 1
        if self.on_close is not None:
            self.on_close()
        self.crossed_at = time.monotonic()
        logger.warning("closing %s: %d waiting", connection.remote_address, waiting)
        self.start(close_for_certain(connection))

    def start(self, closing: Coroutine[Any, Any, None]) -> None:
        """Run ``closing`` in the background, keeping a reference until it is done."""
        task = asyncio.create_task(closing)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


class BoundedBroadcast:
    """``broadcast()`` that closes clients with more than ``limit`` bytes unsent (1013).

    ``broadcast`` writes to every transport without waiting, which is what makes
    it fast, and has no backpressure, which is what makes it dangerous: a client
    that stops reading accumulates every message in server memory, and in
    ``websockets`` 17 keepalive never rescues it while the server keeps writing
    (its ping waits in ``drain()`` behind the backlog, so the ping timeout never
    starts). Checking each transport's buffer first costs one method call per
    client and bounds that memory; :class:`SlowClients` then ends the
    connection for certain.
    """

    def __init__(
        self, limit: int = SLOW_CLIENT_BUFFER, on_close: Callable[[], None] | None = None
    ) -> None:
        self.limit = limit
        self.slow = SlowClients(on_close)

    def __call__(self, connections: Collection[ServerConnection], message: str) -> None:
        """Write ``message`` to every connection now; close those that fell too far behind."""
        ready = []
        limit = self.limit
        for connection in connections:
            transport = connection.transport
            if transport.is_closing():
                # Gone (reset, aborted) though its handler has not heard yet: writing would
                # only make asyncio log "socket.send() raised exception." per write.
                continue
            waiting = transport.get_write_buffer_size()
            if waiting > limit:
                self.slow.close(connection, waiting)
            else:
                ready.append(connection)
        broadcast(ready, message)

    def close(self, connections: Collection[ServerConnection], code: int, reason: str) -> None:
        """Start closing each connection with ``code``, for certain (in the background)."""
        for connection in connections:
            if connection.protocol.state is State.OPEN:
                self.slow.start(close_for_certain(connection, code, reason))


class SendDeadlineConnection(ServerConnection):
    """A connection closed with 1013, for certain, once its writes stay blocked too long.

    Writes block exactly while the transport is paused (its buffer over
    ``write_limit``), so a timer runs from ``pause_writing`` to
    ``resume_writing``: a client that reads again in time costs nothing, and
    one that does not is closed with :func:`close_for_certain`, which also
    ends a handler stuck in ``send`` (and a keepalive ping stuck behind it).
    Nothing is done per message: wrapping every ``send`` in
    ``asyncio.timeout`` instead made each echo round trip ~20% more expensive
    (``course-ws bench echo``). Use :func:`send_deadline` to set the timeout.
    """

    send_timeout: ClassVar[float] = 10.0
    """Seconds the writes may stay blocked before the client is closed."""
    reason: ClassVar[str] = TOO_SLOW
    """The close reason sent with 1013."""

    _stalled: asyncio.TimerHandle | None = None
    _closing: asyncio.Task[None] | None = None

    def pause_writing(self) -> None:
        super().pause_writing()
        self._stalled = self.loop.call_later(self.send_timeout, self._too_slow)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    def _cancel_timer(self) -> None:
        if self._stalled is not None:
            self._stalled.cancel()
            self._stalled = None

    def _too_slow(self) -> None:
        self._stalled = None
        logger.warning(
            "closing %s: nothing read for %g s, %d bytes waiting",
            self.remote_address,
            self.send_timeout,
            self.transport.get_write_buffer_size(),
        )
        self._closing = self.loop.create_task(
            close_for_certain(self, CloseCode.TRY_AGAIN_LATER, self.reason)
        )


def send_deadline(send_timeout: float, reason: str = TOO_SLOW) -> type[SendDeadlineConnection]:
    """A :class:`SendDeadlineConnection` with this timeout, for ``serve(create_connection=...)``."""
    return type(
        "SendDeadlineConnection",
        (SendDeadlineConnection,),
        {"send_timeout": send_timeout, "reason": reason, "__module__": __name__},
    )
