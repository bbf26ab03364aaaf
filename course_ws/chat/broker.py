"""Where messages get their ids and fan out from: one process (memory) or many (Redis).

Every process of a chat server subscribes, per room, to the broker once and fans
each delivery out to its own local members (:mod:`course_ws.chat.rooms`). The
broker assigns message ids, keeps the bounded history that resuming clients
replay, and carries join/leave events.

:class:`MemoryBroker` does all of that inside one process: ids and history
vanish with it. Chapter 06 adds a Redis broker with the same interface for
servers with several worker processes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol

from course_ws.chat.history import DEFAULT_HISTORY, RoomHistory
from course_ws.chat.protocol import Message

Delivery = Callable[[str, int | None], None]
"""Called with each event of a room: the JSON text and the message id (``None`` for presence)."""

MAX_IDLE_ROOMS = 10_000
"""Histories of rooms nobody is in are kept for resuming clients, up to this many rooms."""


class Broker(Protocol):
    """What a chat server needs from its broker."""

    async def publish_message(self, room: str, user: str, text: str) -> Message:
        """Give the message the room's next id, remember it, and deliver it everywhere."""
        ...

    async def publish_presence(self, room: str, event: str) -> None:
        """Deliver a join or leave event to every subscriber of ``room``."""
        ...

    async def replay(self, room: str, since: int | None) -> tuple[int, list[Message]]:
        """The room's last id, and the remembered messages after ``since`` (none if ``None``).

        A ``since`` above the last id comes from before the history was reset (a
        restart of a memory broker): the whole remembered history is replayed.
        """
        ...

    async def subscribe(self, room: str, deliver: Delivery) -> None:
        """Deliver every later event of ``room`` to ``deliver`` (one subscriber per room)."""
        ...

    async def unsubscribe(self, room: str) -> None:
        """Stop delivering ``room``'s events to this process."""
        ...

    async def aclose(self) -> None:
        """Release connections and tasks."""
        ...


class MemoryBroker:
    """A broker for one process: a counter and a bounded history per room."""

    def __init__(self, history_size: int = DEFAULT_HISTORY, max_idle_rooms: int = MAX_IDLE_ROOMS):
        self.history_size = history_size
        self.max_idle_rooms = max_idle_rooms
        self._histories: OrderedDict[str, RoomHistory] = OrderedDict()
        self._subscribers: dict[str, Delivery] = {}

    def _history(self, room: str) -> RoomHistory:
        history = self._histories.get(room)
        if history is None:
            history = self._histories[room] = RoomHistory(self.history_size)
            self._forget_idle_rooms()
        else:
            self._histories.move_to_end(room)
        return history

    def _forget_idle_rooms(self) -> None:
        idle = len(self._histories) - len(self._subscribers)
        for room in list(self._histories):
            if idle <= self.max_idle_rooms:
                break
            if room not in self._subscribers:
                del self._histories[room]
                idle -= 1

    async def publish_message(self, room: str, user: str, text: str) -> Message:
        history = self._history(room)
        message = Message(history.last_id + 1, room, user, text, round(time.time(), 3))
        history.append(message)
        deliver = self._subscribers.get(room)
        if deliver is not None:
            deliver(message.event, message.id)
        return message

    async def publish_presence(self, room: str, event: str) -> None:
        deliver = self._subscribers.get(room)
        if deliver is not None:
            deliver(event, None)

    async def replay(self, room: str, since: int | None) -> tuple[int, list[Message]]:
        history = self._history(room)
        if since is None:
            return history.last_id, []
        if since > history.last_id:
            since = 0
        return history.last_id, history.since(since)

    async def subscribe(self, room: str, deliver: Delivery) -> None:
        if room in self._subscribers:
            raise RuntimeError(f"room {room!r} already has a subscriber in this process")
        self._subscribers[room] = deliver

    async def unsubscribe(self, room: str) -> None:
        self._subscribers.pop(room, None)
        self._forget_idle_rooms()

    async def aclose(self) -> None:
        self._subscribers.clear()
