"""Exercise 06 · redis_subscriber — one Redis subscriber per process that survives Redis.

With several workers, a room's members are spread over processes, and each
process hears the room's messages through Redis pub/sub: ``PUBLISH`` reaches
every connection that has ``SUBSCRIBE``\\ d to the room's channel *at that
instant*. Pub/sub is at-most-once: while a subscriber's connection is down, what
is published is gone. And Redis restarts (upgrades, failovers, crashes). So a
chat server needs a subscriber that

* keeps **one connection** to Redis for all its rooms;
* returns from ``subscribe(room)`` only once Redis **confirmed** the SUBSCRIBE (before
  that, a message published to the room would not reach it);
* when the connection is lost, **reconnects** with exponential backoff and full
  jitter (a thousand workers that lost the same Redis must not all come back in
  the same millisecond), **resubscribes every room**, and
* **catches up** each room from the store by id — the store kept every message
  (``?since=`` replays it to clients); pub/sub only lost the *live* copy — and
  **reports the gap**, so that no member is silently stale;
* stops everything with ``aclose()``.

Why not let redis-py do it? Its asyncio ``PubSub`` does re-send SUBSCRIBE when it
reconnects on the next read, but the read that meets the lost connection raises
``ConnectionError`` once, and what was published meanwhile is gone without a
trace (an ``async for message in pubsub.listen()`` loop simply dies). encode/broadcaster,
which many tutorials use, hangs after a Redis restart (its issue #144). Here the
client is told never to retry by itself (``Retry(NoBackoff(), 0)``): your
supervisor is the only one that reconnects, and it knows when a gap happened.

Write the three methods marked TODO:

1. ``subscribe(room)``: start the supervisor task the first time
   (``asyncio.create_task(self.supervise())``); then, holding ``self.lock``, register
   the room (``self.confirmed.setdefault(room, asyncio.Event())``) and, if a connection
   is live (``self.pubsub is not None``), send ``await self.pubsub.subscribe(channel(room))``
   (a lost connection meanwhile is fine: the supervisor will resubscribe the room).
   Wait for the room's event (``handle`` sets it when Redis confirms), all within
   ``CONFIRM_TIMEOUT`` (``asyncio.timeout``). Then, if the room has no last id yet,
   read its **baseline** from the store: ``last_id, _ = await self.store.replay(room,
   None)`` and ``self.last_ids.setdefault(room, last_id)``. Without a baseline a room
   where nobody spoke yet could not be caught up after a loss.
2. ``supervise()``: forever — take a fresh sequence of delays, ``self.backoff()``;
   ``pubsub = self.client.pubsub()``; ``await pubsub.connect()``; then, holding
   ``self.lock``: ``rooms = list(self.confirmed)``, ``await pubsub.subscribe(...)`` them
   all (if any), ``early = await self.confirmations(pubsub, rooms)``; for each room:
   if this is a *re*\\ connection (``self.connections > 0``) and the room has a last id,
   ``caught_up = await self.catch_up(room)`` and ``self.on_gap(Gap(room, after,
   caught_up))`` (``after``: its last id *before* the catch-up); then set its event.
   ``self.handle`` each early message, and go live: ``self.pubsub = pubsub``. Out of the
   lock: ``self.connections += 1``, a fresh ``self.backoff()`` (this one worked), and read
   forever: ``message = await pubsub.get_message(timeout=None)``, ``self.handle(message)``
   unless it is ``None``.
3. A lost connection raises one of ``DISCONNECTED`` (anywhere in step 2; a Redis
   that is loading its data after a restart too): catch it, and ``finally`` — on every
   way out — set ``self.pubsub = None``, clear every room's event, and close the
   ``PubSub`` (``await pubsub.aclose()``, errors suppressed). Then ``await
   asyncio.sleep(next(delays))`` and go round again.
4. ``aclose()``: cancel the supervisor task and wait for it to end (suppress its
   ``CancelledError``), then close the client (written for you).

Written for you: the client, ``decode`` (the store publishes ``"7 {json event}"``),
``handle`` (one message read: a confirmation sets the room's event; a message is
delivered once, in id order, never twice), ``deliver_once``, ``confirmations``
(read until Redis confirmed each room, keeping what arrives meanwhile) and
``catch_up`` (deliver what the store has after a room's last id). The backoff is
:class:`course_ws.clients.backoff.Backoff` with ``jitter=1``: full jitter, each
delay drawn between 0 and a ceiling that doubles up to its cap.

Try it in a notebook: ``with run_redis() as server:`` (``from
course_ws.hosting.redis_server import run_redis``: a real redis-server on a free
port), ``store = open_redis_broker(server.url).store`` (``from
course_ws.chat.brokers.redis import open_redis_broker``), ``subscriber =
RoomSubscriber(server.url, store, print, on_gap=print)``, ``await
subscriber.subscribe("lobby")``, ``await store.append("lobby", "ada", "hi",
publish=True)``; then ``await asyncio.to_thread(server.restart)``, and watch the gap.
Check your work with ``course_ws.check("redis_subscriber")`` in a notebook, or
``course-ws check redis_subscriber`` in a terminal (it starts a real redis-server,
and restarts it).
"""

import asyncio
import contextlib  # noqa: F401
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from course_ws.chat.brokers.base import Store
from course_ws.chat.brokers.redis import channel
from course_ws.clients.backoff import Backoff

CONFIRM_TIMEOUT = 5.0
"""Seconds Redis has to confirm a SUBSCRIBE (longer means it is down)."""
FULL_JITTER = Backoff(first=0.05, factor=2.0, cap=2.0, jitter=1.0)
"""Waits between 0 and 0.05, 0.1, 0.2 … 2 s: full jitter, doubling up to a cap."""
DISCONNECTED = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
"""What a lost or refused connection raises: ``BusyLoadingError`` (Redis still loading after a
restart) is a ``ConnectionError``, and so is the store's ``BrokerUnavailable``."""

Deliver = Callable[[str, int | None, str], None]
"""Called with each event: the room, the message id (``None`` for presence), the JSON text."""


@dataclass(frozen=True)
class Gap:
    """The connection to Redis was lost while subscribed to ``room``."""

    room: str
    after: int
    """The last id delivered in the room before the loss."""
    caught_up: int
    """How many messages were read back from the store (pub/sub had lost them)."""


def decode(data: str) -> tuple[int | None, str]:
    """``"7 {...}"`` → ``(7, "{...}")``; ``"- {...}"`` (presence, no id) → ``(None, "{...}")``."""
    head, _, event = data.partition(" ")
    return (None if head == "-" else int(head)), event


class RoomSubscriber:
    """Redis pub/sub for the rooms of one process: one supervised, resubscribing connection."""

    def __init__(
        self,
        url: str,
        store: Store,
        deliver: Deliver,
        *,
        on_gap: Callable[[Gap], None] | None = None,
        backoff: Callable[[], Generator[float]] = FULL_JITTER,
    ) -> None:
        self.client = redis.asyncio.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=2.0,  # an unreachable Redis fails fast, never hangs
            socket_keepalive=True,
            retry=Retry(NoBackoff(), 0),  # your supervisor reconnects, nobody else
        )
        self.store = store
        self.deliver = deliver
        self.on_gap = on_gap or (lambda gap: None)
        self.backoff = backoff
        self.confirmed: dict[str, asyncio.Event] = {}
        """Every subscribed room, and whether Redis confirmed it on the current connection."""
        self.last_ids: dict[str, int] = {}
        """The last message id delivered in each room."""
        self.pubsub: PubSub | None = None
        """The live connection (``None`` while connecting, resubscribing or waiting)."""
        self.lock = asyncio.Lock()
        """Held to send SUBSCRIBE, and while resubscribing: no room falls in between."""
        self.supervisor: asyncio.Task[None] | None = None
        self.connections = 0
        """Connections that went live: 1, then one more after each loss."""

    def handle(self, message: dict[str, Any]) -> None:
        """One message read from the connection: a confirmation, or an event to deliver."""
        room = message["channel"].removeprefix(channel(""))
        if message["type"] == "subscribe" and room in self.confirmed:
            self.confirmed[room].set()
        elif message["type"] == "message" and room in self.confirmed:
            message_id, event = decode(message["data"])
            self.deliver_once(room, message_id, event)

    def deliver_once(self, room: str, message_id: int | None, event: str) -> None:
        """Deliver, unless that id was delivered already (by a catch-up); presence always."""
        if message_id is not None:
            if message_id <= self.last_ids.get(room, 0):
                return
            self.last_ids[room] = message_id
        self.deliver(room, message_id, event)

    async def confirmations(self, pubsub: PubSub, rooms: list[str]) -> list[dict[str, Any]]:
        """Read until Redis confirmed every room's SUBSCRIBE; the messages that came meanwhile.

        ``TimeoutError`` if that takes over ``CONFIRM_TIMEOUT`` (Redis is not answering).
        """
        waiting = {channel(room) for room in rooms}
        early: list[dict[str, Any]] = []
        async with asyncio.timeout(CONFIRM_TIMEOUT):
            while waiting:
                message = await pubsub.get_message(timeout=None)
                if message is None:
                    continue
                if message["type"] == "subscribe":
                    waiting.discard(message["channel"])
                else:
                    early.append(message)
        return early

    async def catch_up(self, room: str) -> int:
        """Deliver what the store holds after the room's last delivered id; how many."""
        _, missed = await self.store.replay(room, self.last_ids[room])
        for message in missed:
            self.deliver_once(room, message.id, message.event)
        return len(missed)

    async def subscribe(self, room: str) -> None:
        """Deliver every later message of ``room``; returns once Redis confirmed."""
        # TODO 1: start ``self.supervisor`` (``asyncio.create_task(self.supervise())``) the
        #         first time. Within ``asyncio.timeout(CONFIRM_TIMEOUT)``: holding ``self.lock``,
        #         ``confirmed = self.confirmed.setdefault(room, asyncio.Event())``; if
        #         ``self.pubsub`` is live and the room not confirmed yet,
        #         ``await self.pubsub.subscribe(channel(room))`` (suppress ``DISCONNECTED``);
        #         then, out of the lock, ``await confirmed.wait()``.
        #         Then the baseline: if ``room not in self.last_ids``,
        #         ``last_id, _ = await self.store.replay(room, None)`` and
        #         ``self.last_ids.setdefault(room, last_id)``.
        # As it is, nothing is subscribed, and this returns at once.

    async def supervise(self) -> None:
        """Connect, resubscribe every room, catch up after a loss, read; forever."""
        delays = self.backoff()  # noqa: F841
        # TODO 2: ``while True``: ``pubsub = self.client.pubsub()``; ``await pubsub.connect()``;
        #         holding ``self.lock``: ``rooms = list(self.confirmed)``; subscribe them all
        #         (``await pubsub.subscribe(*(channel(room) for room in rooms))``, if any);
        #         ``early = await self.confirmations(pubsub, rooms)``; for each room, on a
        #         reconnection (``self.connections``) with a last id: ``after`` = that id,
        #         ``caught_up = await self.catch_up(room)``, ``self.on_gap(Gap(room, after,
        #         caught_up))``; then ``self.confirmed[room].set()``. ``self.handle`` each
        #         early message; ``self.pubsub = pubsub``. Out of the lock:
        #         ``self.connections += 1``, ``delays = self.backoff()`` (a fresh sequence),
        #         then read forever: ``message = await pubsub.get_message(timeout=None)``,
        #         ``self.handle(message)`` if it is not ``None``.
        # TODO 3: around all that, ``except DISCONNECTED``: the connection was lost (or Redis
        #         is still down); ``finally``: ``self.pubsub = None``, clear every event of
        #         ``self.confirmed``, close the ``PubSub`` (``await pubsub.aclose()``, errors
        #         suppressed). Then ``await asyncio.sleep(next(delays))``, and round again.

    async def aclose(self) -> None:
        """Stop the supervisor and close the connection."""
        # TODO 4: cancel ``self.supervisor`` (if there is one) and wait for it to end,
        #         suppressing its ``asyncio.CancelledError``; then the client, as below.
        await self.client.aclose()
