"""The members of each room connected to this process, and how one joins without a gap.

A room exists in this process while anyone *holds* it: a live member, or a
member still being welcomed and replayed to. The last one to let go — by
leaving, or by dropping in the middle of its welcome — removes the room and
cancels its subscription, so an aborted resume leaves nothing behind.

Every operation is O(1) in the number of rooms.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection, Hashable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from course_ws.chat.brokers import Broker, Subscription
from course_ws.chat.catchup import CatchUp
from course_ws.chat.protocol import presence, welcome
from course_ws.rfc6455.constants import CloseCode

Connection = TypeVar("Connection", bound=Hashable)
Member_contra = TypeVar("Member_contra", bound=Hashable, contravariant=True)
Send = Callable[[str], Awaitable[None]]


class Fanout(Protocol[Member_contra]):
    """How one stack pushes to many connections of this process without waiting."""

    def __call__(self, members: Collection[Member_contra], event: str, /) -> None:
        """Send ``event`` to each of ``members`` now or queue it; never wait for one."""
        ...

    def close(self, members: Collection[Member_contra], code: int, reason: str, /) -> None:
        """Start closing each of ``members`` with ``code`` (for certain), without waiting."""
        ...


@dataclass(eq=False)
class LocalRoom(Generic[Connection]):
    """One room as this process sees it: its live members and the joins in progress."""

    name: str
    fanout: Fanout[Connection]
    members: dict[Connection, str] = field(default_factory=dict)
    catching_up: set[CatchUp] = field(default_factory=set)
    holders: int = 0
    subscribed: asyncio.Task[Subscription] | None = None
    delivered: int = 0
    """The highest message id the bus has delivered here (it delivers in id order)."""
    replayed: dict[Connection, int] = field(default_factory=dict)
    """Members whose replay went past ``delivered``: the last id each was sent. The bus
    still delivers those ids here later (another process said them; the replay read
    them from the store first), and these members must not get them twice."""
    resuming: set[Connection] = field(default_factory=set)
    """Members being closed with 1012 by :meth:`resume`: sent nothing more until they leave."""
    on_dropped: Callable[[int], None] | None = None
    """Called with the close code for each member :meth:`resume` closes (a metric)."""

    def deliver(self, event: str, message_id: int | None) -> None:
        """Called by the bus for each event of the room."""
        for catch_up in self.catching_up:
            catch_up.deliver(event, message_id)
        skip: set[Connection] | None = None
        if message_id is not None:
            self.delivered = max(self.delivered, message_id)
            if self.replayed:
                ahead = {c for c, last in self.replayed.items() if message_id <= last}
                for caught_up in [c for c, last in self.replayed.items() if message_id >= last]:
                    del self.replayed[caught_up]
                skip = ahead or None
        if self.resuming:
            skip = self.resuming if skip is None else skip | self.resuming
        if skip:
            self.fanout([c for c in self.members if c not in skip], event)
        elif self.members:
            self.fanout(self.members.keys(), event)

    def resume(self, reason: str) -> None:
        """Called by the bus when it lost the thread of the room: close every member
        with 1012 so that each resumes from the store with ``?since=``, and fail every
        join in progress (1013: try again). The ids start over from the bus's next one.
        """
        self.delivered = 0
        self.replayed.clear()
        for catch_up in self.catching_up:
            catch_up.abandon(reason)
        closing = [member for member in self.members if member not in self.resuming]
        if not closing:
            return
        self.resuming.update(closing)
        self.fanout.close(closing, CloseCode.SERVICE_RESTART, reason)
        if self.on_dropped is not None:
            for _ in closing:
                self.on_dropped(CloseCode.SERVICE_RESTART)


class LocalRooms(Generic[Connection]):
    """Every room that has members (or joiners) in this process."""

    def __init__(
        self,
        broker: Broker,
        fanout: Fanout[Connection],
        presence_limit: int = 100,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        self.broker = broker
        self.fanout = fanout
        self.presence_limit = presence_limit
        self.on_dropped = on_dropped
        """Called with the close code for each member closed by the room (not the stack)."""
        self.rooms: dict[str, LocalRoom[Connection]] = {}
        self.members = 0
        """Live members in all rooms of this process."""

    def _hold(self, room: str) -> LocalRoom[Connection]:
        local = self.rooms.get(room)
        if local is None:
            local = self.rooms[room] = LocalRoom(room, self.fanout, on_dropped=self.on_dropped)
            local.subscribed = asyncio.ensure_future(
                self.broker.bus.subscribe(room, local.deliver, local.resume)
            )
            self.broker.store.hold(room)
        local.holders += 1
        return local

    async def _let_go(self, local: LocalRoom[Connection]) -> None:
        local.holders -= 1
        if local.holders > 0:
            return
        if self.rooms.get(local.name) is local:
            del self.rooms[local.name]
        self.broker.store.release(local.name)
        subscribing = local.subscribed
        if subscribing is None:
            return
        if subscribing.done() and not subscribing.cancelled() and not subscribing.exception():
            await subscribing.result().cancel()
        else:
            subscribing.cancel()  # not subscribed yet (or failed): nothing to undo

    async def join(
        self, room: str, connection: Connection, user: str, since: int | None, send: Send
    ) -> None:
        """Welcome ``connection``, replay what it missed, then make it a live member.

        If this raises (the client went away, the send timed out), the member
        never joined and holds nothing.
        """
        local = self._hold(room)
        catch_up = CatchUp()
        joined = False
        try:
            assert local.subscribed is not None
            await asyncio.shield(local.subscribed)
            tracked = len(local.members) < self.presence_limit  # still small once we are in
            # From here on, presence lands in the catch-up buffer, not in this list.
            members = sorted(local.members.values()) if tracked else None
            local.catching_up.add(catch_up)
            last_id, missed = await self.broker.store.replay(room, since)
            await send(welcome(room, user, last_id, members))
            for message in missed:
                await send(message.event)
            while (event := catch_up.after(last_id)) is not None:
                await send(event)
            # No await since the buffer ran dry: nothing can fall in between.
            local.catching_up.discard(catch_up)
            if last_id > local.delivered:  # the bus has yet to bring what the replay sent
                local.replayed[connection] = last_id
            local.members[connection] = user
            self.members += 1
            joined = True
        finally:
            local.catching_up.discard(catch_up)
            if not joined:
                await self._let_go(local)
        if len(local.members) <= self.presence_limit:
            await self.broker.bus.publish(room, presence("join", room, user), None)

    async def leave(self, room: str, connection: Connection) -> None:
        """Remove ``connection`` and tell the others; forget the room when nobody holds it."""
        local = self.rooms.get(room)
        if local is None or connection not in local.members:
            return
        announce = len(local.members) <= self.presence_limit
        user = local.members.pop(connection)
        local.replayed.pop(connection, None)
        local.resuming.discard(connection)
        self.members -= 1
        if announce:  # members in other processes hear it too
            await self.broker.bus.publish(room, presence("leave", room, user), None)
        await self._let_go(local)
