"""The members of each room connected to this process, and how one joins without a gap.

A client that resumes with ``since=N`` must receive every message after N
exactly once, even while others keep talking. Joining therefore opens a
*catch-up buffer* first, replays the history, then sends whatever the buffer
caught that is newer than the replay, and only then becomes a live member.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from course_ws.chat.broker import Broker
from course_ws.chat.protocol import presence, welcome

Connection = TypeVar("Connection", bound=Hashable)
Fanout = Callable[[Collection[Connection], str], None]
"""Send one event to many connections of this process without waiting (the stack decides how)."""
Send = Callable[[str], Awaitable[None]]


@dataclass(eq=False)
class LocalRoom(Generic[Connection]):
    """One room as this process sees it: its live members and the joins in progress."""

    name: str
    fanout: Fanout[Connection]
    members: dict[Connection, str] = field(default_factory=dict)
    catching_up: list[list[tuple[int | None, str]]] = field(default_factory=list)

    def deliver(self, event: str, message_id: int | None) -> None:
        """Called by the broker for each event of the room."""
        for buffer in self.catching_up:
            buffer.append((message_id, event))
        if self.members:
            self.fanout(self.members.keys(), event)


class LocalRooms(Generic[Connection]):
    """Every room that has members in this process."""

    def __init__(
        self, broker: Broker, fanout: Fanout[Connection], presence_limit: int = 100
    ) -> None:
        self.broker = broker
        self.fanout = fanout
        self.presence_limit = presence_limit
        self.rooms: dict[str, LocalRoom[Connection]] = {}

    async def join(
        self, room: str, connection: Connection, user: str, since: int | None, send: Send
    ) -> None:
        """Welcome ``connection``, replay what it missed, then make it a live member."""
        local = self.rooms.get(room)
        if local is None:
            local = self.rooms[room] = LocalRoom(room, self.fanout)
            await self.broker.subscribe(room, local.deliver)
        buffer: list[tuple[int | None, str]] = []
        tracked = len(local.members) < self.presence_limit  # still small once we are in
        # Presence after this point is in the buffer.
        members = sorted(local.members.values()) if tracked else None
        local.catching_up.append(buffer)
        try:
            last_id, missed = await self.broker.replay(room, since)
            await send(welcome(room, user, last_id, members))
            sent = 0
            for message in missed:
                await send(message.event)
                sent = message.id
            sent = max(sent, last_id if since is None else sent)
            index = 0
            while index < len(buffer):  # the buffer may grow while we send
                message_id, event = buffer[index]
                if message_id is None or message_id > sent:
                    await send(event)
                    sent = max(sent, message_id or 0)
                index += 1
        finally:
            local.catching_up.remove(buffer)
        local.members[connection] = user
        if len(local.members) <= self.presence_limit:
            await self.broker.publish_presence(room, presence("join", room, user))

    async def leave(self, room: str, connection: Connection) -> None:
        """Remove ``connection`` and tell the others; forget the room when nobody is left."""
        local = self.rooms.get(room)
        if local is None or connection not in local.members:
            return
        announce = len(local.members) <= self.presence_limit
        user = local.members.pop(connection)
        if not local.members and not local.catching_up:
            del self.rooms[room]
            await self.broker.unsubscribe(room)
        if announce:
            await self.broker.publish_presence(room, presence("leave", room, user))
