"""A broker for one process: a counter and a bounded history per room, and direct delivery.

Ids and history vanish with the process; a client that resumes with a
``since`` from before the restart gets the whole (new) history replayed.

Idle rooms (no member in this process) keep their history for clients that
come back, within a cap in rooms *and* in bytes; the least recently used idle
room is forgotten first. Every operation is O(1) in the number of rooms (a scan
over 30,000 rooms made each join and leave 10 times slower).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from course_ws.chat.brokers.base import Delivery, Resume
from course_ws.chat.history import DEFAULT_HISTORY, DEFAULT_HISTORY_BYTES, RoomHistory
from course_ws.chat.protocol import Message

MAX_IDLE_ROOMS = 10_000
"""Histories of rooms nobody is in are kept for resuming clients, up to this many rooms."""
MAX_IDLE_BYTES = 64 * 2**20
"""... and up to this many bytes in all."""


class MemoryStore:
    """Ids and bounded histories in this process's memory."""

    def __init__(
        self,
        history_size: int = DEFAULT_HISTORY,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
        max_idle_rooms: int = MAX_IDLE_ROOMS,
        max_idle_bytes: int = MAX_IDLE_BYTES,
    ) -> None:
        self.history_size = history_size
        self.history_bytes = history_bytes
        self.max_idle_rooms = max_idle_rooms
        self.max_idle_bytes = max_idle_bytes
        self._histories: dict[str, RoomHistory] = {}
        self._held: dict[str, int] = {}
        self._idle: OrderedDict[str, None] = OrderedDict()
        self._idle_bytes = 0
        self._bytes = 0

    @property
    def rooms(self) -> int:
        return len(self._histories)

    @property
    def bytes(self) -> int:
        return self._bytes

    def _history(self, room: str) -> RoomHistory:
        history = self._histories.get(room)
        if history is None:
            history = self._histories[room] = RoomHistory(self.history_size, self.history_bytes)
            if room not in self._held:
                self._idle[room] = None
        elif room in self._idle:
            self._idle.move_to_end(room)
        return history

    def _forget_idle_rooms(self) -> None:
        while self._idle and (
            len(self._idle) > self.max_idle_rooms or self._idle_bytes > self.max_idle_bytes
        ):
            room, _ = self._idle.popitem(last=False)
            history = self._histories.pop(room)
            self._bytes -= history.bytes
            self._idle_bytes -= history.bytes

    async def append(self, room: str, user: str, text: str) -> Message:
        history = self._history(room)
        message = Message(history.last_id + 1, room, user, text, round(time.time(), 3))
        added = history.append(message)
        self._bytes += added
        if room in self._idle:
            self._idle_bytes += added
            self._forget_idle_rooms()
        return message

    async def replay(self, room: str, since: int | None) -> tuple[int, list[Message]]:
        history = self._history(room)
        self._forget_idle_rooms()
        if since is None:
            return history.last_id, []
        if since > history.last_id:
            since = 0
        return history.last_id, history.since(since)

    def hold(self, room: str) -> None:
        self._held[room] = self._held.get(room, 0) + 1
        if room in self._idle:
            del self._idle[room]
            self._idle_bytes -= self._histories[room].bytes

    def release(self, room: str) -> None:
        held = self._held.get(room, 0) - 1
        if held > 0:
            self._held[room] = held
            return
        self._held.pop(room, None)
        history = self._histories.get(room)
        if history is not None:
            self._idle[room] = None
            self._idle_bytes += history.bytes
            self._forget_idle_rooms()

    async def aclose(self) -> None:
        """Nothing to release: the histories go with the process."""


class MemorySubscription:
    """One delivery callback registered for one room of a :class:`MemoryBus`."""

    def __init__(self, bus: MemoryBus, room: str, deliver: Delivery) -> None:
        self.bus = bus
        self.room = room
        self.deliver = deliver

    async def cancel(self) -> None:
        self.bus.drop(self)


class MemoryBus:
    """Delivers each event synchronously to the subscribers of its room, in this process."""

    def __init__(self) -> None:
        self._rooms: dict[str, set[MemorySubscription]] = {}
        self._count = 0

    @property
    def subscriptions(self) -> int:
        return self._count

    async def publish(self, room: str, event: str, message_id: int | None) -> None:
        for subscription in list(self._rooms.get(room, ())):
            subscription.deliver(event, message_id)

    async def subscribe(
        self, room: str, deliver: Delivery, resume: Resume | None = None
    ) -> MemorySubscription:
        """Deliver every later event of ``room``; ``resume`` is never called: events
        published in this process cannot be lost on the way, and the store they share
        never goes back."""
        subscription = MemorySubscription(self, room, deliver)
        self._rooms.setdefault(room, set()).add(subscription)
        self._count += 1
        return subscription

    def drop(self, subscription: MemorySubscription) -> None:
        """Remove ``subscription`` (a no-op the second time)."""
        subscribers = self._rooms.get(subscription.room)
        if subscribers is None or subscription not in subscribers:
            return
        subscribers.remove(subscription)
        self._count -= 1
        if not subscribers:
            del self._rooms[subscription.room]

    async def aclose(self) -> None:
        self._rooms.clear()
        self._count = 0
