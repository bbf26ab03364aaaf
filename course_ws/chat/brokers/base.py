"""What a chat server needs from its broker: a *store* and a *bus*.

The **store** gives each message its room's next id, keeps the bounded
history, and replays it to resuming clients. The **bus** carries every event of
a room (messages, joins, leaves) to each process that has members there.

They are separate because they are separate in production: chapter 06 keeps
the store in Redis (ids and a capped history) and uses Redis pub/sub as the
bus; Django Channels keeps its store in the database and uses its channel
layer as the bus. A bus is at-most-once; the store is what makes a resume
lossless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from course_ws.chat.protocol import Message

Delivery = Callable[[str, int | None], None]
"""Called with each event of a room: the JSON text and the message id (``None`` for presence)."""
Resume = Callable[[str], None]
"""Called with a reason when a bus can no longer deliver a room without a gap: messages
were lost for good on the way, or the store's ids went back (a Redis that lost its data).
Every member of the room in this process must then resume from the store (1012)."""


class Store(Protocol):
    """Ids, bounded history and replay."""

    async def append(self, room: str, user: str, text: str) -> Message:
        """Give the message the room's next id and remember it."""
        ...

    async def replay(self, room: str, since: int | None) -> tuple[int, list[Message]]:
        """The room's last id, and the remembered messages after ``since`` (none if ``None``).

        A ``since`` above the last id comes from before the history was reset (a
        restart of a memory store): the whole remembered history is replayed.
        """
        ...

    def hold(self, room: str) -> None:
        """A room has members in this process: keep its history however idle rooms are capped."""
        ...

    def release(self, room: str) -> None:
        """A room has no more members in this process: its history may be forgotten when capped."""
        ...

    @property
    def rooms(self) -> int:
        """Rooms whose history this store keeps in this process."""
        ...

    @property
    def bytes(self) -> int:
        """Bytes of history this store keeps in this process."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


class Subscription(Protocol):
    """One process's subscription to one room, from :meth:`Bus.subscribe`."""

    async def cancel(self) -> None:
        """Stop delivering; idempotent."""
        ...


class Bus(Protocol):
    """Carries the events of each room to every subscribed process."""

    async def publish(self, room: str, event: str, message_id: int | None) -> None:
        """Deliver ``event`` to every subscriber of ``room``."""
        ...

    async def subscribe(
        self, room: str, deliver: Delivery, resume: Resume | None = None
    ) -> Subscription:
        """Deliver every later event of ``room`` to ``deliver``.

        Returns only once every event published after it returns will be delivered.
        ``resume(reason)`` is called whenever this bus finds it cannot keep that
        promise for ``room`` (a bus that always can never calls it).
        """
        ...

    @property
    def subscriptions(self) -> int:
        """Open subscriptions in this process."""
        ...

    async def aclose(self) -> None:
        """Cancel every subscription and release connections."""
        ...


@dataclass(frozen=True)
class Figure:
    """One number a store or bus reports at ``GET /metrics``, read at each scrape."""

    name: str
    documentation: str
    read: Callable[[], float]


@runtime_checkable
class Reporting(Protocol):
    """A store or bus with figures of its own for ``GET /metrics`` (reconnections, gaps...)."""

    def figures(self) -> list[Figure]:
        """Its figures; each name starts with ``course_ws_``."""
        ...


@dataclass(frozen=True)
class Broker:
    """A store and a bus that work together."""

    store: Store
    bus: Bus

    async def publish_message(self, room: str, user: str, text: str) -> Message:
        """Store the message (it gets its id), then deliver it everywhere."""
        message = await self.store.append(room, user, text)
        await self.bus.publish(room, message.event, message.id)
        return message

    async def aclose(self) -> None:
        """Close the bus, then the store."""
        await self.bus.aclose()
        await self.store.aclose()
