"""A bounded per-member outbox, for stacks whose only way to write is ``await send``.

ASGI (raw, Starlette, FastAPI) and Channels give a server ``await send(...)``
and nothing else: no buffer to inspect, no write that returns at once. A chat
that awaits every member in turn lets one stalled reader stall the room (the
``sequential`` strategy of :mod:`.strategies`); a task per message lets its
backlog grow without bound (``task-per-client``). The outbox is the bounded
middle: the room calls :meth:`Outbox.offer`, which never waits, and one writer
task per member drains the messages in order through ``send``.

A member whose unsent backlog grows past the limit is *too slow*: the outbox
stops accepting, drops what it holds, and asks the adapter to close with 1013
("too slow: reconnect and resume" — a client resumes with ``?since=N``). It
does not trust that close to finish: a peer that stopped reading keeps the
transport paused, and on uvicorn a ``websocket.close`` then waits forever
behind the data it cannot flush. If the close has not finished within
``close_timeout``, the outbox calls ``abort``, which ends the connection
without a handshake (for the ASGI host: :func:`course_ws.servers._asgi_host.asgi_outbox`).

    async with Outbox(send_text, close=close, abort=abort) as outbox:
        room.join(outbox.offer)   # the room calls offer(message) for every event
        ...                       # until the member leaves
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Generic, TypeVar

from course_ws.fanout.bounded import SLOW_CLIENT_BUFFER, TOO_SLOW, logger
from course_ws.rfc6455.constants import CloseCode

MAX_BACKLOG_BYTES = SLOW_CLIENT_BUFFER
"""Unsent bytes (UTF-8 for text) before a member counts as too slow: 256 KiB.

The same limit as the ``websockets`` chat server's :class:`.bounded.BoundedBroadcast`,
so every server drops a slow member at the same point. It holds about a thousand
typical chat events (~200 bytes) or sixteen of the largest (4096 characters,
up to 4 bytes each): seconds of a busy room, which a reader with a short hiccup
catches up on, and a bounded cost per member (256 KiB × members) when many stall.
"""
MAX_BACKLOG_MESSAGES = 1024
"""Unsent messages before a member counts as too slow.

Bytes alone undercount tiny messages: each queued ``str`` costs about 50 bytes
of object overhead besides its payload. 1024 also leaves room for the catch-up
replay (``history_size`` defaults to 1000), which goes through the outbox so
that it stays in order with live messages.
"""
CLOSE_TIMEOUT = 5.0
"""Seconds the 1013 close may take before the connection is aborted.

Long enough for a healthy but busy client to answer the close frame, short
enough that a stalled one costs its transport buffers for seconds, not minutes;
the same 5 s the other servers give a closing handshake.
"""

M = TypeVar("M", bound=str | bytes)


class OutboxState(enum.Enum):
    """Where an outbox is in its life. Every transition is one-way."""

    OPEN = "open"
    """Accepting messages; the writer sends them in order."""
    TOO_SLOW = "too slow"
    """The backlog went over the limit: dropped, closed with 1013 (aborted if need be)."""
    CLOSED = "closed"
    """Closed by :meth:`Outbox.aclose` or :meth:`Outbox.end`, or ``send`` failed because
    the peer is gone."""


def message_size(message: str | bytes) -> int:
    """Bytes ``message`` takes on the wire: UTF-8 for text, without encoding ASCII."""
    if isinstance(message, bytes) or message.isascii():
        return len(message)
    return len(message.encode())


class Outbox(Generic[M]):
    """Messages waiting for one member, written in order by one task; bounded.

    ``send(message)`` writes one message (``await websocket.send_text(m)``,
    ``await send({"type": "websocket.send", "text": m})``). When the backlog
    goes over ``max_bytes`` or ``max_messages`` (``None``: no limit of that
    kind), the outbox is :attr:`OutboxState.TOO_SLOW`: it awaits
    ``close(1013, "too slow: reconnect and resume")`` once, and calls
    ``abort()`` if that has not returned within ``close_timeout`` seconds (or
    raised). ``close`` should return only once the connection is over, or as
    close to it as the stack can tell; ``abort`` must end the connection at
    once, without waiting for the peer (it may be called after the connection
    already ended, and must then do nothing).

    ``write_now(message)``, if given, is tried first whenever nothing is
    waiting: it writes the message at once and returns ``True``, or returns
    ``False`` (the stack would have to wait) and the message is queued as
    usual. The writer keeps the message it is sending at the head of the queue,
    so an empty queue means an idle writer, and order is kept. A room of 1,000
    members that all read then costs 1,000 writes, not 1,000 task wake-ups
    (measured: 1.5-2× the ``websockets`` chat's fan-out time without it).

    Create it inside a running event loop: the writer task starts at once.
    """

    def __init__(
        self,
        send: Callable[[M], Awaitable[None]],
        *,
        close: Callable[[int, str], Awaitable[None]],
        abort: Callable[[], object],
        max_bytes: int | None = MAX_BACKLOG_BYTES,
        max_messages: int | None = MAX_BACKLOG_MESSAGES,
        close_timeout: float = CLOSE_TIMEOUT,
        name: str = "member",
        write_now: Callable[[M], bool] | None = None,
    ) -> None:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1 or None, got {max_bytes}")
        if max_messages is not None and max_messages < 1:
            raise ValueError(f"max_messages must be at least 1 or None, got {max_messages}")
        if close_timeout <= 0:
            raise ValueError(f"close_timeout must be positive, got {close_timeout}")
        self._send = send
        self._write_now = write_now
        self._close = close
        self._abort = abort
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self.close_timeout = close_timeout
        self.name = name
        self._state = OutboxState.OPEN
        self._queue: deque[tuple[M, int]] = deque()
        self._backlog_bytes = 0
        self._ready = asyncio.Event()
        self._writer: asyncio.Task[None] = asyncio.create_task(
            self._write(), name=f"outbox writer for {name}"
        )
        self._closer: asyncio.Task[None] | None = None

    # -- what the room and the metrics see -------------------------------------

    @property
    def state(self) -> OutboxState:
        """OPEN while accepting, then TOO_SLOW (dropped with 1013) or CLOSED."""
        return self._state

    @property
    def backlog_bytes(self) -> int:
        """Bytes offered and not yet sent, the message being sent included."""
        return self._backlog_bytes

    @property
    def backlog_messages(self) -> int:
        """Messages offered and not yet sent, the message being sent included."""
        return len(self._queue)

    def offer(self, message: M) -> bool:
        """Queue ``message`` for the writer without waiting; ``False`` if it is not accepted.

        A message is refused once the outbox is no longer open, and the message
        that takes the backlog over the limit is refused too: the member is
        then too slow, and the close with 1013 starts in the background.
        """
        if self._state is not OutboxState.OPEN:
            return False
        if not self._queue and self._write_now is not None and self._write_now(message):
            return True  # nothing waiting, and the stack wrote it at once: no task to wake
        size = message_size(message)
        self._queue.append((message, size))
        self._backlog_bytes += size
        if self._over_limit():
            self._too_slow()
            return False
        self._ready.set()
        return True

    async def aclose(self) -> None:
        """Stop the writer, drop the backlog, and return with no task left behind.

        Safe to call more than once and in any state. A 1013 close already under
        way is awaited (``close_timeout`` at most), not cancelled: cancelling it
        would skip the abort that makes the drop certain. Cancelling ``aclose``
        itself aborts the connection at once.
        """
        if self._state is OutboxState.OPEN:
            self._state = OutboxState.CLOSED
        self._drop_backlog()
        await self._stop_writer()
        closer = self._closer
        if closer is not None and not closer.done():
            try:
                await asyncio.shield(closer)
            except asyncio.CancelledError:
                closer.cancel()
                self._abort_quietly()
                raise

    async def __aenter__(self) -> Outbox[M]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"<Outbox {self.name} {self._state.value}: "
            f"{len(self._queue)} messages, {self._backlog_bytes} bytes waiting>"
        )

    # -- inside --------------------------------------------------------------

    def _over_limit(self) -> bool:
        return (self.max_bytes is not None and self._backlog_bytes > self.max_bytes) or (
            self.max_messages is not None and len(self._queue) > self.max_messages
        )

    async def _write(self) -> None:
        """Send the oldest message, then the next; end quietly when ``send`` fails."""
        try:
            while True:
                if not self._queue:
                    self._ready.clear()
                    await self._ready.wait()
                    continue
                message, size = self._queue[0]
                await self._send(message)
                # The queue is only ever emptied when the outbox stops accepting: if it
                # was while send() waited, there is nothing to pop and nothing to send.
                if self._queue:
                    self._queue.popleft()
                    self._backlog_bytes -= size
        except Exception as exc:  # the peer is gone: nothing left to deliver to
            logger.debug("outbox for %s: send failed (%r), closing", self.name, exc)
            if self._state is OutboxState.OPEN:
                self._state = OutboxState.CLOSED
            self._drop_backlog()

    def end(self, code: int, reason: str) -> None:
        """Refuse from now on, drop the backlog, and close with ``code`` for certain, in
        the background (aborted after ``close_timeout``); a no-op unless open.

        For a member the server ends for a reason of its own (1012: resume, the
        room's history was reset). :meth:`aclose` waits for that close.
        """
        if self._state is not OutboxState.OPEN:
            return
        self._state = OutboxState.CLOSED
        self._start_closing(code, reason)

    def _too_slow(self) -> None:
        """Refuse from now on, free the backlog, and close with 1013 for certain."""
        self._state = OutboxState.TOO_SLOW
        logger.warning(
            "closing %s: too slow, %d messages (%d bytes) unsent",
            self.name,
            len(self._queue),
            self._backlog_bytes,
        )
        self._start_closing(CloseCode.TRY_AGAIN_LATER, TOO_SLOW)

    def _start_closing(self, code: int, reason: str) -> None:
        self._drop_backlog()
        # The writer is most likely stuck in send(), waiting for a buffer that will
        # not drain; it must not write after the close frame, so it goes first.
        self._writer.cancel()
        self._closer = asyncio.create_task(
            self._close_for_certain(code, reason), name=f"{code} for {self.name}"
        )

    async def _close_for_certain(self, code: int, reason: str) -> None:
        await self._stop_writer()
        try:
            async with asyncio.timeout(self.close_timeout):
                await self._close(code, reason)
        except TimeoutError:
            logger.warning(
                "aborting %s: the %d close did not finish within %g s",
                self.name,
                code,
                self.close_timeout,
            )
            self._abort_quietly()
        except Exception as exc:
            logger.debug("closing %s failed (%r): aborting", self.name, exc)
            self._abort_quietly()

    def _abort_quietly(self) -> None:
        try:
            self._abort()
        except Exception:
            logger.exception("aborting %s failed", self.name)

    async def _stop_writer(self) -> None:
        """Cancel the writer and wait until it has ended (a cancel of the caller still counts)."""
        writer = self._writer
        if not writer.done():
            writer.cancel()
            await asyncio.wait([writer])

    def _drop_backlog(self) -> None:
        self._queue.clear()
        self._backlog_bytes = 0
