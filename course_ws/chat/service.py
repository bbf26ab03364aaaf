"""The chat of one server process, ready for any stack: rooms, broker, limits and metrics.

An adapter holds one :class:`ChatService` and does three things per connection:

1. at the handshake, :meth:`ChatService.admit` — accept, or refuse with the
   HTTP status and text it returns;
2. after accepting, ``async with service.member(admitted, connection, send)``
   — the welcome, the gapless replay, live membership, and the leave;
3. for each frame, :meth:`ChatService.handle` — ``None`` (published), a
   :class:`Reply` to push to this member, or a :class:`Close` to carry out.

How to push an event to many members without waiting (the *fan-out*) is the
one thing each stack decides for itself: it is passed in as ``fanout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Generic

from course_ws.chat.admission import Admitted, Refusal, admit
from course_ws.chat.brokers import Broker
from course_ws.chat.metrics import ServerMetrics
from course_ws.chat.ratelimit import AddressLimits, PerAddress
from course_ws.chat.rooms import Connection, Fanout, LocalRooms, Send
from course_ws.chat.session import Close, MemberSession, Publish, Reply
from course_ws.options import ServeOptions

JOIN_TIMEOUT = 10.0
"""Seconds a member may take to receive its welcome and replay; longer, it is too slow (1013)."""


class ChatService(Generic[Connection]):
    """Rooms, broker, per-address limits and metrics of one chat server process."""

    def __init__(
        self,
        broker: Broker,
        fanout: Fanout[Connection],
        options: ServeOptions,
        metrics: ServerMetrics | None = None,
        join_timeout: float = JOIN_TIMEOUT,
    ) -> None:
        self.broker = broker
        self.options = options
        self.join_timeout = join_timeout
        self.rooms: LocalRooms[Connection] = LocalRooms(broker, fanout, options.presence_limit)
        self.addresses = PerAddress(
            AddressLimits(
                message_rate=options.message_rate,
                message_burst=options.message_burst,
                connect_rate=options.connect_rate,
                connect_burst=options.connect_burst,
                max_connections=options.max_connections_per_address,
            )
        )
        self.metrics = metrics or ServerMetrics()
        self._describe_state()

    def _describe_state(self) -> None:
        rooms, store, bus = self.rooms, self.broker.store, self.broker.bus
        gauge = self.metrics.gauge
        gauge(
            "course_ws_rooms_active",
            "Rooms with at least one member in this process",
            lambda: sum(1 for room in rooms.rooms.values() if room.members),
        )
        gauge("course_ws_room_members", "Members of rooms in this process", lambda: rooms.members)
        gauge(
            "course_ws_broker_subscriptions",
            "Rooms this process is subscribed to on the bus",
            lambda: bus.subscriptions,
        )
        gauge(
            "course_ws_history_rooms",
            "Rooms whose history is kept for resuming clients",
            lambda: store.rooms,
        )
        gauge(
            "course_ws_history_bytes",
            "Bytes of history kept for resuming clients",
            lambda: store.bytes,
        )

    def admit(self, target: str, address: str) -> Admitted | Refusal:
        """Admit or refuse one chat handshake (a refusal is counted by status)."""
        decision = admit(target, address, self.addresses.attempt)
        if isinstance(decision, Refusal):
            self.metrics.refused(decision.status)
        return decision

    @asynccontextmanager
    async def member(
        self, admitted: Admitted, connection: Connection, send: Send
    ) -> AsyncIterator[MemberSession]:
        """Join ``admitted.room`` for the ``async with`` block, then leave.

        Raises :class:`TimeoutError` if the welcome and replay take longer than
        the join timeout (a client that does not read): close it with 1013.
        """
        bucket = self.addresses.opened(admitted.address)
        try:
            async with asyncio.timeout(self.join_timeout):
                await self.rooms.join(
                    admitted.room, connection, admitted.user, admitted.since, send
                )
            try:
                yield MemberSession(admitted.room, admitted.user, bucket)
            finally:
                await self.rooms.leave(admitted.room, connection)
        finally:
            self.addresses.closed(admitted.address)

    async def handle(self, session: MemberSession, frame: str | bytes) -> Reply | Close | None:
        """Carry out one frame: publish it, or return the reply or close the adapter owes."""
        action = session.receive(frame)
        if isinstance(action, Publish):
            await self.broker.publish_message(session.room, session.user, action.text)
            self.metrics.messages_published.inc()
            return None
        if isinstance(action, Close):
            self.metrics.dropped(action.code)
        return action

    async def aclose(self) -> None:
        """Release the broker (after the adapter has closed every connection)."""
        await self.broker.aclose()
