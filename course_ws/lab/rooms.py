"""One room, one member that stops reading: the tutorials' ``ConnectionManager`` against the course.

:func:`run_stalled_room` runs one experiment on the caller's event loop
(``await run_stalled_room(...)`` in a cell) against a server that is already
running: ``members`` healthy members who record how long each message took to
reach them, a publisher who says ``messages`` texts of ``size`` characters, one
every ``interval`` s, and optionally one more member, connected first, that
stops reading (:func:`~course_ws.lab.fanout.stalled_client`, with a small
receive buffer so that it fills up after a few messages, not a few megabytes).

Two kinds of server speak in a room differently, so a :class:`Dialect` says
how to join, speak and read: :data:`SEED` for
:mod:`course_ws.lab.connection_manager` (plain text in, ``"Message: ..."`` out,
everyone in one room at ``/ws``), :data:`COURSE` for the course's chat protocol
(``/chat/lobby``, ``say`` in, ``message`` events out).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from course_ws.lab.connection_manager import PREFIX
from course_ws.lab.fanout import latency_percentile, show_ms, stalled_client
from course_ws.servers._asgi_chat import cap_send_buffer
from course_ws.servers._asgi_host import ASGIApp, Receive, Scope, Send

JOIN_TIMEOUT = 2.0


class Dialect:
    """How to join a room, say something and recognise what was said, on one kind of server."""

    name = "?"

    def url(self, base: str, user: str) -> str:
        """The WebSocket URL of the room for ``user`` on the server at ``base`` (``ws://host:port``)."""
        raise NotImplementedError

    def say(self, text: str) -> str:
        """The frame that says ``text``."""
        raise NotImplementedError

    def said(self, frame: str | bytes) -> str | None:
        """The text a member said, if ``frame`` carries one; ``None`` for anything else."""
        raise NotImplementedError

    async def joined(self, websocket: ClientConnection, user: str) -> None:
        """Return once the server counts ``websocket`` as a member of the room."""
        raise NotImplementedError


class SeedDialect(Dialect):
    """:mod:`course_ws.lab.connection_manager`: one room at ``/ws``, plain text."""

    name = "ConnectionManager"

    def url(self, base: str, user: str) -> str:
        return f"{base}/ws"

    def say(self, text: str) -> str:
        return text

    def said(self, frame: str | bytes) -> str | None:
        if isinstance(frame, str) and frame.startswith(PREFIX):
            return frame.removeprefix(PREFIX)
        return None

    async def joined(self, websocket: ClientConnection, user: str) -> None:
        # The list is appended to after accept: once our own probe comes back, we are in it.
        probe = f"probe from {user}"
        await websocket.send(probe)
        async with asyncio.timeout(JOIN_TIMEOUT):
            while self.said(await websocket.recv()) != probe:
                pass


class CourseDialect(Dialect):
    """The course's chat protocol, in the room ``lobby``."""

    name = "course chat"
    room = "lobby"

    def url(self, base: str, user: str) -> str:
        return f"{base}/chat/{self.room}?{urlencode({'user': user})}"

    def say(self, text: str) -> str:
        return json.dumps({"type": "say", "text": text})

    def said(self, frame: str | bytes) -> str | None:
        event = json.loads(frame)
        return str(event["text"]) if event.get("type") == "message" else None

    async def joined(self, websocket: ClientConnection, user: str) -> None:
        # Every member, the newcomer included, hears its join once it is in the room's fan-out.
        async with asyncio.timeout(JOIN_TIMEOUT):
            while True:
                event = json.loads(await websocket.recv())
                if event.get("type") == "join" and event.get("user") == user:
                    return


SEED = SeedDialect()
COURSE = CourseDialect()


class SmallSendBuffer:
    """ASGI middleware: each WebSocket's server end gets the course servers' kernel send buffer.

    The course's chat servers cap ``SO_SNDBUF`` at 64 KiB
    (:data:`~course_ws.servers._asgi_chat.KERNEL_SEND_BUFFER`); an app served
    without it lets Linux grow the buffer to megabytes first. Wrapping the
    tutorial's app in this makes the comparison fair: same buffers, different
    fan-out. It works under the course's host (``serve_in_background(app)``).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            cap_send_buffer(scope)
        await self.app(scope, receive, send)


@dataclass
class StallRun:
    """What one run measured."""

    server: str
    stalled: bool
    members: int
    messages: int
    sent: list[float] = field(default_factory=list)
    """When message ``n`` was said, in seconds from the first one."""
    latencies: list[dict[int, float]] = field(default_factory=list)
    """For each healthy member: message number → seconds from said to received."""
    stalled_close: int | None = None
    """The close code the stalled member received, ``None`` if the server kept it."""

    @property
    def delivered(self) -> float:
        """The share of (healthy member, message) pairs that arrived in time."""
        return sum(map(len, self.latencies)) / (self.members * self.messages)

    def slowest(self) -> list[float]:
        """For each message said: its latency to the slowest healthy member (``inf``: never)."""
        return [
            max(member.get(n, math.inf) for member in self.latencies) for n in range(len(self.sent))
        ]

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile over every pair that should have arrived (missing: ``inf``)."""
        every = [latency for member in self.latencies for latency in member.values()]
        return latency_percentile(every, p, self.members * self.messages)

    def __str__(self) -> str:
        stall = "one member stalled" if self.stalled else "all reading"
        closed = "" if not self.stalled else f", stalled member: {self.verdict()}"
        return (
            f"{self.server:>17} ({stall}): delivered {self.delivered:.0%}, "
            f"p50 {show_ms(self.percentile(50))}, p99 {show_ms(self.percentile(99))}{closed}"
        )

    def verdict(self) -> str:
        """What happened to the stalled member."""
        return "kept" if self.stalled_close is None else f"closed {self.stalled_close}"


async def _listen(
    websocket: ClientConnection,
    dialect: Dialect,
    start: float,
    latencies: dict[int, float],
    last: int,
) -> None:
    """Record each numbered message's latency, until message ``last`` (or the end)."""
    with contextlib.suppress(ConnectionClosed):
        async for frame in websocket:
            text = dialect.said(frame)
            if text is not None and text[:6].isdigit():
                n = int(text[:6])
                latencies[n] = time.perf_counter() - start - float(text[7:24])
                if n == last:
                    return


async def _close_code(websocket: ClientConnection, within: float) -> int | None:
    """Read what the server left for a stalled member until it closes; its close code."""
    websocket.transport.resume_reading()
    try:
        async with asyncio.timeout(within):
            async for _ in websocket:
                pass
    except (TimeoutError, ConnectionClosed):
        pass
    return websocket.close_code


async def run_stalled_room(
    base: str,
    dialect: Dialect,
    *,
    stalled: bool,
    members: int = 3,
    messages: int = 150,
    size: int = 4000,
    interval: float = 0.005,
    deadline: float = 1.0,
) -> StallRun:
    """Say ``messages`` texts into the room at ``base``; how late do healthy members get them?

    Each text starts with its number and the time it was said, padded to
    ``size`` characters. A healthy member still missing messages ``deadline``
    seconds after the last one was said counts them as never delivered.
    """
    run = StallRun(dialect.name, stalled, members, messages)
    async with contextlib.AsyncExitStack() as stack:
        stuck = None
        if stalled:  # first in the room: first in the tutorial's list
            stuck = await stalled_client(dialect.url(base, "stuck"))
            stack.push_async_callback(_abort, stuck)
        clients = []
        for index in range(members + 1):  # the last one is the publisher
            user = f"member{index}" if index < members else "publisher"
            websocket = await connect(dialect.url(base, user), ping_interval=None, compression=None)
            stack.push_async_callback(_abort, websocket)
            await dialect.joined(websocket, user)
            clients.append(websocket)
        *listeners, publisher = clients
        start = time.perf_counter()
        run.latencies = [{} for _ in listeners]
        last = messages - 1
        tasks = [
            asyncio.create_task(_listen(websocket, dialect, start, latencies, last))
            for websocket, latencies in zip(listeners, run.latencies, strict=True)
        ]
        draining = asyncio.create_task(_listen(publisher, dialect, start, {}, -1))  # reads all
        padding = "x" * max(0, size - 25)
        for n in range(messages):
            said = time.perf_counter() - start
            try:
                async with asyncio.timeout(deadline):
                    await publisher.send(dialect.say(f"{n:06d} {said:17.6f} {padding}"))
            except TimeoutError:
                break  # the server stopped reading from the publisher: the rest is lost
            run.sent.append(said)
            await asyncio.sleep(interval)
        await asyncio.wait(tasks, timeout=deadline)
        for task in [*tasks, draining]:
            task.cancel()
        if stuck is not None:
            run.stalled_close = await _close_code(stuck, deadline)
    return run


async def _abort(websocket: ClientConnection) -> None:
    websocket.transport.abort()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(1):
            await websocket.wait_closed()
