"""Sending one message to many WebSockets: four ways, and the one the chat server uses.

Most tutorials fan out with a loop of ``await websocket.send(...)``. It works
until one client stops reading: its buffers fill, ``send`` waits for it, and
everyone after it in the loop waits too. The strategies here differ in what a
slow client costs the others (latency) and the server (memory):

==================  ============================  ==================================
strategy            a stalled client...            memory for the stalled client
==================  ============================  ==================================
``sequential``      stalls everyone after it      bounded (the loop is stuck)
``task-per-client`` costs nobody else             unbounded: a pending task per message
``broadcast``       costs nobody else             unbounded: bytes pile up in its buffer
``queues``          costs nobody else             bounded: a full queue drops the client
``bounded``         costs nobody else             bounded: over the limit, it is dropped
==================  ============================  ==================================

``bounded`` (``broadcast`` plus a cap on what may wait for one client) is what
:mod:`course_ws.servers.chat` uses: one non-blocking pass, no task per client.
It lives in :mod:`course_ws.fanout.bounded`, with the way a dropped client is
closed for certain; its names are re-exported here for the lessons.
"""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from typing import ClassVar

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosed

from course_ws.fanout.bounded import (
    SLOW_CLIENT_BUFFER,
    TOO_SLOW,
    BoundedBroadcast,
    SlowClients,
    logger,
)

__all__ = [
    "QUEUE_SIZE",
    "SLOW_CLIENT_BUFFER",
    "STRATEGIES",
    "TOO_SLOW",
    "BoundedBroadcast",
    "BoundedBroadcastFanout",
    "BroadcastFanout",
    "Fanout",
    "QueueFanout",
    "SequentialFanout",
    "SlowClients",
    "TaskPerClientFanout",
    "logger",
]

QUEUE_SIZE = 64
"""Messages waiting for one client before :class:`QueueFanout` closes it (1013)."""


class Fanout(ABC):
    """Keeps the connected clients, and sends every published message to all of them.

    :meth:`handler` is a ``websockets`` handler for clients that only listen.
    """

    name: ClassVar[str]

    def __init__(self) -> None:
        self.clients: set[ServerConnection] = set()

    async def handler(self, websocket: ServerConnection) -> None:
        """Register a listener until it goes away."""
        self.join(websocket)
        try:
            await websocket.wait_closed()
        finally:
            self.leave(websocket)

    def join(self, websocket: ServerConnection) -> None:
        self.clients.add(websocket)

    def leave(self, websocket: ServerConnection) -> None:
        self.clients.discard(websocket)

    @abstractmethod
    async def publish(self, message: str) -> None:
        """Send ``message`` to every client (returns when this strategy is done with it)."""

    def backlog(self) -> int:
        """Bytes waiting in the server for clients that have not read them yet."""
        return sum(client.transport.get_write_buffer_size() for client in self.clients)

    @property
    def dropped(self) -> int:
        """Clients this strategy closed for being too slow."""
        return 0


class SequentialFanout(Fanout):
    """``for client in clients: await client.send(message)`` — what most tutorials show."""

    name = "sequential"

    async def publish(self, message: str) -> None:
        for client in list(self.clients):
            with contextlib.suppress(ConnectionClosed):  # it left; its handler unregisters it
                await client.send(message)


class TaskPerClientFanout(Fanout):
    """One task per client per message: nobody waits, but tasks pile up for a stalled client.

    ``send`` writes the frame into the transport before it waits for the client
    to drain it, so the bytes show in :meth:`backlog` like ``broadcast``'s; what
    comes on top is a pending task (and its coroutine frame) per message.
    """

    name = "task-per-client"

    def __init__(self) -> None:
        super().__init__()
        self.pending: set[asyncio.Task[None]] = set()

    async def publish(self, message: str) -> None:
        for client in self.clients:
            task = asyncio.create_task(self._send(client, message))
            self.pending.add(task)
            task.add_done_callback(self.pending.discard)

    @staticmethod
    async def _send(client: ServerConnection, message: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await client.send(message)


class BroadcastFanout(Fanout):
    """``websockets.broadcast``: one pass of non-blocking writes, no backpressure at all."""

    name = "broadcast"

    async def publish(self, message: str) -> None:
        broadcast(self.clients, message)


class QueueFanout(Fanout):
    """A bounded queue and a writer task per client; a full queue closes that client (1013)."""

    name = "queues"

    def __init__(self, size: int = QUEUE_SIZE) -> None:
        super().__init__()
        self.size = size
        self.queues: dict[ServerConnection, asyncio.Queue[str]] = {}
        self.slow = SlowClients()
        self.waiting = 0  # bytes of queued messages

    async def handler(self, websocket: ServerConnection) -> None:
        queue: asyncio.Queue[str] = asyncio.Queue(self.size)
        self.queues[websocket] = queue
        writer = asyncio.create_task(self._write(websocket, queue))
        try:
            await super().handler(websocket)
        finally:
            del self.queues[websocket]
            writer.cancel()
            while not queue.empty():
                self.waiting -= len(queue.get_nowait())

    async def _write(self, websocket: ServerConnection, queue: asyncio.Queue[str]) -> None:
        try:
            while True:
                message = await queue.get()
                self.waiting -= len(message)
                await websocket.send(message)
        except ConnectionClosed:
            pass

    async def publish(self, message: str) -> None:
        for websocket, queue in self.queues.items():
            try:
                queue.put_nowait(message)
            except asyncio.QueueFull:
                self.slow.close(websocket, queue.qsize())
            else:
                self.waiting += len(message)

    def backlog(self) -> int:
        return super().backlog() + self.waiting

    @property
    def dropped(self) -> int:
        return self.slow.closed


class BoundedBroadcastFanout(Fanout):
    """:class:`BoundedBroadcast`: the chat server's strategy."""

    name = "bounded"

    def __init__(self, limit: int = SLOW_CLIENT_BUFFER) -> None:
        super().__init__()
        self.send = BoundedBroadcast(limit)

    async def publish(self, message: str) -> None:
        self.send(self.clients, message)

    @property
    def dropped(self) -> int:
        return self.send.slow.closed


STRATEGIES: dict[str, type[Fanout]] = {
    strategy.name: strategy
    for strategy in (
        SequentialFanout,
        TaskPerClientFanout,
        BroadcastFanout,
        QueueFanout,
        BoundedBroadcastFanout,
    )
}
