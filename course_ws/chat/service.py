"""The chat of one server process, ready for any stack: rooms, broker, limits and metrics.

An adapter holds one :class:`ChatService` and does three things per connection:

1. at the handshake, :meth:`ChatService.admit` — accept, or refuse with the
   HTTP status and text it returns;
2. after accepting, ``async with service.member(admitted, connection, send)``
   — the welcome, the gapless replay, live membership, and the leave;
3. for each frame, :meth:`ChatService.handle` — ``None`` (published), a
   :class:`Reply` to push to this member, or a :class:`Close` to carry out.

Messages can also come from outside any WebSocket: :meth:`ChatService.post`
says one into a room for an HTTP ``POST /rooms/{room}/messages``, with the
same rules, the same rate limit per address and the same fan-out.

How to push an event to many members without waiting (the *fan-out*) is the
one thing each stack decides for itself: it is passed in as ``fanout``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic

from course_ws.chat.admission import Admitted, Refusal, admit
from course_ws.chat.brokers import Broker, BrokerUnavailable
from course_ws.chat.brokers.base import Reporting
from course_ws.chat.metrics import ServerMetrics
from course_ws.chat.protocol import (
    MAX_POST_BYTES,
    ROOM_PATTERN,
    ChatError,
    ErrorCode,
    Message,
    Post,
    dumps,
    parse_post,
)
from course_ws.chat.ratelimit import AddressLimits, PerAddress
from course_ws.chat.rooms import Connection, Fanout, LocalRooms, Send
from course_ws.chat.session import Close, MemberSession, Publish, Reply
from course_ws.options import ServeOptions

JOIN_TIMEOUT = 10.0
"""Seconds a member may take to receive its welcome and replay; longer, it is too slow (1013)."""


UNAVAILABLE = "the chat cannot store messages right now: nothing was said; try again shortly"
"""Said (error event, or 503) when the broker is unreachable."""

TOO_SLOW_TO_JOIN = "too slow to join"
"""The close reason (1013) for a member that did not take its welcome and replay in time."""
UNAVAILABLE_TO_JOIN = "the chat is unavailable right now; try again shortly"
"""The close reason (1013) for a member that cannot join while the broker is unreachable."""

MESSAGES_PATH = re.compile(r"/rooms/([^/]*)/messages")


def posting_room(path: str) -> str | None:
    """The room of a ``/rooms/{room}/messages`` path (any name: :meth:`ChatService.post`
    refuses one that cannot exist), or ``None`` for any other path."""
    match = MESSAGES_PATH.fullmatch(path)
    return match.group(1) if match else None


class CannotJoin(TimeoutError):
    """The member cannot join now: close it with 1013 (try again later) and :attr:`reason`.

    Too slow to take its welcome and replay, a room that moved faster than its
    catch-up buffer, a room whose ids went back meanwhile, or a broker that
    cannot be reached. A :class:`TimeoutError`, so that an adapter that closes
    with 1013 on a timeout does the right thing without knowing the cause.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Posted:
    """A message said over HTTP: answer ``201 Created`` with :attr:`body`."""

    message: Message

    status = 201

    @property
    def body(self) -> str:
        """``{"type": "posted", "room": r, "id": N}``: where the message went."""
        return dumps({"type": "posted", "room": self.message.room, "id": self.message.id})


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
        self.metrics = metrics or ServerMetrics()
        self.rooms: LocalRooms[Connection] = LocalRooms(
            broker, fanout, options.presence_limit, self.metrics.dropped
        )
        self.addresses = PerAddress(
            AddressLimits(
                message_rate=options.message_rate,
                message_burst=options.message_burst,
                connect_rate=options.connect_rate,
                connect_burst=options.connect_burst,
                max_connections=options.max_connections_per_address,
            )
        )
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
        for part in (store, bus):
            if isinstance(part, Reporting):
                for figure in part.figures():
                    gauge(figure.name, figure.documentation, figure.read)

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

        Raises :class:`CannotJoin` (a :class:`TimeoutError`) if the welcome and
        replay take longer than the join timeout, if the room said more meanwhile
        than the member's catch-up buffer holds (a client that does not read fast
        enough), or if the broker cannot be reached: close it with 1013 and the
        exception's ``reason``.
        """
        bucket = self.addresses.opened(admitted.address)
        try:
            try:
                async with asyncio.timeout(self.join_timeout):
                    await self.rooms.join(
                        admitted.room, connection, admitted.user, admitted.since, send
                    )
            except OverflowError as exc:  # the CatchUp buffer overflowed, or was abandoned
                raise CannotJoin(str(exc)) from exc
            except TimeoutError as exc:
                raise CannotJoin(TOO_SLOW_TO_JOIN) from exc
            except BrokerUnavailable as exc:
                raise CannotJoin(UNAVAILABLE_TO_JOIN) from exc
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
            try:
                await self.broker.publish_message(session.room, session.user, action.text)
            except BrokerUnavailable:  # nothing was stored: say so, keep the member
                return Reply(ChatError(ErrorCode.UNAVAILABLE, UNAVAILABLE).event())
            self.metrics.messages_published.inc()
            return None
        if isinstance(action, Close):
            self.metrics.dropped(action.code)
        return action

    async def post(
        self, room: str, body: bytes, address: str, content_type: str | None
    ) -> Posted | Refusal:
        """Say the message in a ``POST /rooms/{room}/messages`` ``body`` into ``room``.

        ``body`` is what the adapter read: it reads at most ``MAX_POST_BYTES``
        and answers 413 itself beyond that, without reading further. Refused:
        415 unless the ``Content-Type`` is JSON (a browser cannot send that to
        another origin without asking first, so no web page can post in the
        user's name), 404 for a room name that cannot exist, 429 when the
        address is over its message rate, 400 for a body that is not a
        :class:`~course_ws.chat.protocol.Post`.
        """
        if (refusal := self.refuse_content_type(content_type)) is not None:
            return refusal
        if len(body) > MAX_POST_BYTES:
            return self._refused(413, f"a message body is at most {MAX_POST_BYTES} bytes")
        try:
            post = parse_post(body)
        except ChatError as error:
            return self.refuse_post(error.detail)
        return await self.post_message(room, post, address)

    def refuse_content_type(self, content_type: str | None) -> Refusal | None:
        """415 unless ``content_type`` is JSON (counted), else ``None``."""
        media_type = (content_type or "").partition(";")[0].strip().lower()
        if media_type != "application/json":
            return self._refused(415, "send the message as Content-Type: application/json")
        return None

    def refuse_post(self, detail: str) -> Refusal:
        """400 for a body that is not a :class:`~course_ws.chat.protocol.Post` (counted)."""
        return self._refused(400, detail)

    async def post_message(self, room: str, post: Post, address: str) -> Posted | Refusal:
        """Say an already validated :class:`~course_ws.chat.protocol.Post` into ``room``."""
        if not ROOM_PATTERN.fullmatch(room):
            return self._refused(404, f"no chat room {room!r}: rooms are 1-64 of A-Z a-z 0-9 _ -")
        if not self.addresses.message(address):
            return self._refused(429, f"too many messages from {address}; slow down")
        try:
            message = await self.broker.publish_message(room, post.user, post.text)
        except BrokerUnavailable:
            return self._refused(503, UNAVAILABLE)
        self.metrics.messages_published.inc()
        return Posted(message)

    def _refused(self, status: int, text: str) -> Refusal:
        self.metrics.posts_refused.labels(status=str(status)).inc()
        return Refusal(status, text)

    async def aclose(self) -> None:
        """Release the broker (after the adapter has closed every connection)."""
        await self.broker.aclose()
