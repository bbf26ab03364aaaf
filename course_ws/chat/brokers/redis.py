"""A broker for many processes: the store and the bus in one Redis (``redis://HOST:PORT/DB``).

**Store.** Each room is two keys: a hash ``course-ws:{room}:meta`` with the
room's last ``id`` and the ``bytes`` of its history, and a list
``course-ws:{room}:log`` of the message events, oldest first. One Lua script
(:data:`APPEND`) gives a message the next id, builds its event around it,
pushes it, trims the list from the left while it holds more than
``history_size`` messages *or* more than ``history_bytes`` bytes (the UTF-8
size of the stored events, counted in the hash as they come and go; the newest
message is always kept), renews the keys' time to live and publishes the event.
Redis runs a script atomically, so ids are strictly increasing, the counter and
the history never disagree, and a room's events are published in id order. The
list holds consecutive ids ending at the last one, so a replay after ``since``
is one ``LRANGE`` of the last ``last_id - since`` entries (:data:`REPLAY`).

**Idle rooms** are capped by time, not by count: every append renews both keys'
TTL (:data:`IDLE_TTL`, a day), and each process renews the TTL of the rooms it
has members in every ``idle_ttl / 4``, so only rooms nobody is in and nobody
writes to expire. What bounds Redis's memory as a whole is Redis itself:
``maxmemory`` with ``maxmemory-policy volatile-lru`` evicts the least recently
used rooms first. If one key of a room is evicted without the other, the next
append notices and starts the room over consistently. ``--idle-rooms`` and
``--idle-history-bytes`` bound a memory store; with Redis they bound nothing.

**Bus.** Redis pub/sub, one channel per room (``course-ws:room:{room}``), one
subscriber connection per process, supervised (:class:`RedisBus`). Pub/sub is
at-most-once: a connection lost for a second loses that second's events. So
the bus tracks the last id it delivered in each room; after reconnecting (and
whenever a room's ids jump) it reads what it missed from the store, by id, and
delivers it before anything newer. Members are never silently stale.

**A Redis that lost its data** (restarted without an append-only file) starts
every room's ids over, so ids the members hold now name other messages. Each
process notices when its subscriber reconnects — the random token it saw in
:data:`EPOCH_KEY` is gone or different, or a room's last id went back — or,
for a Redis flushed under a connected subscriber, at the first message whose
id was delivered already. It then closes the members of every room with 1012:
they resume with ``?since=N``, and a ``since`` above the room's last id replays
the whole (new) history.

**Presence** events (join, leave) have no id and are not stored: one published while
Redis is down is lost, and a member list may then be out of date until the next
join or leave; that is the price of not storing presence.

**While Redis is down**, nothing can be said: a message needs the store for its
id, so :meth:`RedisBroker.publish_message` raises :class:`BrokerUnavailable`
(the server turns it into an error for that one client, who may say it again
later) rather than accepting a message that could be lost. Connected members
stay connected; new members cannot join (their replay needs the store): they
are closed with 1013, try again later.

**Gauges** never wait for Redis: ``rooms`` and ``bytes`` count the rooms this
process has members in and their history's size as last seen here (after each
append and replay). Redis's own view is ``INFO memory`` and ``MEMORY USAGE``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio
import redis.exceptions
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff

from course_ws.chat.brokers import BrokerUnavailable
from course_ws.chat.brokers.base import Broker, Delivery, Figure, Resume
from course_ws.chat.history import DEFAULT_HISTORY, DEFAULT_HISTORY_BYTES
from course_ws.chat.protocol import Message

logger = logging.getLogger("course_ws.chat.brokers.redis")

CONNECT_TIMEOUT = 2.0
"""Seconds to open a TCP connection to Redis: an unreachable Redis fails fast, never hangs."""
COMMAND_TIMEOUT = 5.0
"""Seconds a command may wait for its answer."""
POOL_SIZE = 32
"""Connections for commands per process: Redis answers each in microseconds, so a few
suffice for thousands of members, and a hundred processes stay far below Redis's limit."""
SUBSCRIBE_TIMEOUT = 5.0
"""Seconds :meth:`RedisBus.subscribe` waits for Redis to confirm (longer while reconnecting)."""
IDLE_TTL = 24 * 3600
"""Seconds a room nobody is in and nobody writes to is kept."""
BACKOFF_BASE = 0.05
"""First reconnection delay of the subscriber, in seconds (then doubled at each failure)."""
BACKOFF_CAP = 5.0
"""Longest reconnection delay, in seconds."""
RESET = "the chat's history was reset: reconnect to hear what was said since"
"""Why a room's members are closed with 1012 when its ids went back (Redis lost its data)."""
PREFIX = "course-ws"

DISCONNECTED = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
"""What a lost or refused connection raises (``BusyLoadingError`` too: Redis is starting)."""


def safe_url(url: str) -> str:
    """``url`` without its password, to print: ``redis://127.0.0.1:6379/0``."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def meta_key(room: str) -> str:
    """The hash of ``room``: its last ``id`` and its history's ``bytes``.

    The braces are a Redis Cluster hash tag: a room's keys live on one shard,
    so the scripts that touch both keys work there too.
    """
    return f"{PREFIX}:{{{room}}}:meta"


def log_key(room: str) -> str:
    """The list of ``room``'s message events, oldest first."""
    return f"{PREFIX}:{{{room}}}:log"


EPOCH_KEY = f"{PREFIX}:epoch"
"""A random token, set by the first subscriber to connect to a Redis that has none.

A Redis that lost its data (restarted without an append-only file, flushed,
replaced) lost the token too, and the next subscriber sets a new one: every
process that finds a token other than the one it saw before knows that the
rooms' ids it delivered now name other messages, or none. Comparing ids alone
misses it once a room has said as many messages since as before.
"""


def channel(room: str) -> str:
    """The pub/sub channel of ``room``."""
    return f"{PREFIX}:room:{room}"


APPEND = """
-- KEYS: meta, log.  ARGV: event head, event tail, max messages, max bytes, ttl, channel or ''.
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])                  -- the counter expired or was evicted: start over
elseif redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('HSET', KEYS[1], 'bytes', 0)     -- the history was evicted: the ids go on
end
local id = redis.call('HINCRBY', KEYS[1], 'id', 1)
local event = ARGV[1] .. id .. ARGV[2]
local bytes = redis.call('HINCRBY', KEYS[1], 'bytes', #event)
local length = redis.call('RPUSH', KEYS[2], event)
local max_length, max_bytes = tonumber(ARGV[3]), tonumber(ARGV[4])
while length > max_length or (bytes > max_bytes and length > 1) do
  bytes = redis.call('HINCRBY', KEYS[1], 'bytes', -#redis.call('LPOP', KEYS[2]))
  length = length - 1
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
if ARGV[6] ~= '' then
  redis.call('PUBLISH', ARGV[6], id .. ' ' .. event)
end
return {id, bytes}
"""
"""Append one message to a room (and publish it), atomically; returns its id and the bytes kept."""

REPLAY = """
-- KEYS: meta, log.  ARGV: since (-1: none).  Returns {last id, bytes, {events after since}}.
local meta = redis.call('HMGET', KEYS[1], 'id', 'bytes')
local last, bytes = tonumber(meta[1] or '0'), tonumber(meta[2] or '0')
local since = tonumber(ARGV[1])
if since > last then since = 0 end           -- a since from before the room started over
if since < 0 or since == last then return {last, bytes, {}} end
return {last, bytes, redis.call('LRANGE', KEYS[2], since - last, -1)}
"""
"""The last id, the bytes kept, and the events after ``since``, read at one instant."""

MESSAGE_HEAD = '{"type":"message","id":'


def event_parts(room: str, user: str, text: str, ts: float) -> tuple[str, str]:
    """The ``message`` event before and after its id, so that the script can put the id in.

    ``head + str(id) + tail`` is exactly :attr:`Message.event` (the tests check it).
    """
    template = Message(0, room, user, text, ts).event
    if not template.startswith(MESSAGE_HEAD + "0,"):
        raise AssertionError(f"the message event changed shape: {template[:60]}")
    return MESSAGE_HEAD, template[len(MESSAGE_HEAD) + 1 :]


def parse_message(event: str) -> Message:
    """The :class:`Message` of a stored ``message`` event."""
    data: dict[str, Any] = json.loads(event)
    return Message(data["id"], data["room"], data["user"], data["text"], data["ts"])


def command_client(url: str) -> redis.asyncio.Redis:
    """A client for the store's commands, on a pool of at most :data:`POOL_SIZE` connections.

    A command waits for a free connection (up to its timeout) rather than fail:
    redis-py's default pool raises "Too many connections" beyond 100 concurrent
    commands, which a busy server reaches. A stale pooled connection (Redis
    restarted) is replaced and the command retried twice; a Redis that stays down
    fails within seconds. ``redis.asyncio.from_url`` alone retries nothing: after a
    restart of Redis the first command on each pooled connection fails.
    """
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        url,
        max_connections=POOL_SIZE,
        timeout=COMMAND_TIMEOUT,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=COMMAND_TIMEOUT,
        socket_keepalive=True,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), 2),
        retry_on_error=[redis.exceptions.ConnectionError],
    )
    return redis.asyncio.Redis.from_pool(pool)


def check_reachable(url: str) -> None:
    """Raise :class:`BrokerUnavailable`, one line naming ``url``, unless Redis answers PING.

    Blocking, bounded by :data:`CONNECT_TIMEOUT`: it runs once, while a server starts,
    so that a server with an unreachable broker never starts listening.
    """
    client = redis.Redis.from_url(
        url, socket_connect_timeout=CONNECT_TIMEOUT, socket_timeout=CONNECT_TIMEOUT
    )
    try:
        client.ping()
    except (redis.exceptions.RedisError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BrokerUnavailable(f"cannot reach the broker at {safe_url(url)}: {reason}") from None
    finally:
        client.close()


class RedisStore:
    """Ids and bounded histories in Redis, shared by every process that uses the same one."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        url: str,
        history_size: int = DEFAULT_HISTORY,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
        idle_ttl: int = IDLE_TTL,
    ) -> None:
        if history_size < 1 or history_bytes < 1 or idle_ttl < 1:
            raise ValueError("history_size, history_bytes and idle_ttl must be at least 1")
        self.client = client
        self.url = url
        self.history_size = history_size
        self.history_bytes = history_bytes
        self.idle_ttl = idle_ttl
        self._append = client.register_script(APPEND)
        self._replay = client.register_script(REPLAY)
        self._held: dict[str, int] = {}
        self._known_bytes: dict[str, int] = {}
        self._bytes = 0
        self._keeper: asyncio.Task[None] | None = None

    @property
    def rooms(self) -> int:
        """Rooms this process has members in (their history is kept alive from here)."""
        return len(self._held)

    @property
    def bytes(self) -> int:
        """Bytes of history of those rooms, as last seen by this process."""
        return self._bytes

    def _saw(self, room: str, size: int) -> None:
        if room in self._held:
            self._bytes += size - self._known_bytes.get(room, 0)
            self._known_bytes[room] = size

    def _unavailable(self, exc: BaseException) -> BrokerUnavailable:
        return BrokerUnavailable(f"the broker at {safe_url(self.url)} is unreachable: {exc}")

    async def append(self, room: str, user: str, text: str, *, publish: bool = False) -> Message:
        """Give the message the room's next id and remember it (and publish it, atomically)."""
        ts = round(time.time(), 3)
        head, tail = event_parts(room, user, text, ts)
        target = channel(room) if publish else ""
        args: list[str | int] = [
            head,
            tail,
            self.history_size,
            self.history_bytes,
            self.idle_ttl,
            target,
        ]
        try:
            message_id, size = await self._append(keys=[meta_key(room), log_key(room)], args=args)
        except DISCONNECTED as exc:
            raise self._unavailable(exc) from exc
        self._saw(room, int(size))
        return Message(int(message_id), room, user, text, ts)

    async def replay(self, room: str, since: int | None) -> tuple[int, list[Message]]:
        """The room's last id and the remembered messages after ``since`` (none if ``None``)."""
        keys = [meta_key(room), log_key(room)]
        try:
            last_id, size, events = await self._replay(
                keys=keys, args=[-1 if since is None else since]
            )
        except DISCONNECTED as exc:
            raise self._unavailable(exc) from exc
        self._saw(room, int(size))
        return int(last_id), [parse_message(event) for event in events]

    async def last_id(self, room: str) -> int:
        """The room's last id (0 for a room nobody has spoken in)."""
        try:
            found = await self.client.hget(meta_key(room), "id")
        except DISCONNECTED as exc:
            raise self._unavailable(exc) from exc
        return int(found or 0)

    def hold(self, room: str) -> None:
        """A room has members here: renew its TTL while they stay."""
        self._held[room] = self._held.get(room, 0) + 1
        if self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(self._keep_held_rooms())

    def release(self, room: str) -> None:
        """A room has no more members here: it expires ``idle_ttl`` after its last use."""
        held = self._held.get(room, 0) - 1
        if held > 0:
            self._held[room] = held
            return
        self._held.pop(room, None)
        self._bytes -= self._known_bytes.pop(room, 0)

    async def _keep_held_rooms(self) -> None:
        """Every ``idle_ttl / 4``, renew the TTL of the rooms held here (one pipeline)."""
        while True:
            await asyncio.sleep(self.idle_ttl / 4)
            rooms = list(self._held)
            try:
                async with self.client.pipeline(transaction=False) as pipe:
                    for room in rooms:
                        pipe.expire(meta_key(room), self.idle_ttl)
                        pipe.expire(log_key(room), self.idle_ttl)
                    await pipe.execute()
            except DISCONNECTED as exc:  # next time; the TTL is four times longer
                logger.warning("could not renew the TTL of %d rooms: %s", len(rooms), exc)

    async def aclose(self) -> None:
        """Stop renewing TTLs and close the connections."""
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        await self.client.aclose()


class RedisSubscription:
    """One delivery callback for one room of a :class:`RedisBus`."""

    def __init__(
        self, bus: RedisBus, room: str, deliver: Delivery, resume: Resume | None = None
    ) -> None:
        self.bus = bus
        self.room = room
        self.deliver = deliver
        self.resume = resume

    async def cancel(self) -> None:
        """Stop delivering; idempotent."""
        await self.bus.drop(self)


@dataclass(eq=False)
class Channel:
    """What the bus knows of one room it is subscribed to."""

    room: str
    subscriptions: set[RedisSubscription] = field(default_factory=set)
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    """Redis confirmed the SUBSCRIBE on the current connection."""
    last_id: int | None = None
    """The last message id delivered (``None``: not known yet)."""


@dataclass
class BusStats:
    """What the supervised subscriber has been through, for metrics and tests."""

    connections: int = 0
    """Subscriber connections established (1 + reconnections)."""
    caught_up: int = 0
    """Messages delivered from the store because pub/sub missed them."""
    lost: int = 0
    """Messages missed that the store no longer had (a gap longer than the history)."""
    resets: int = 0
    """Rooms whose ids went backwards: Redis lost its data (no persistence?)."""


class RedisBus:
    """Redis pub/sub with one supervised subscriber connection for the whole process.

    The supervisor task connects, subscribes to the channel of every room with a
    subscription here, waits until Redis confirms them all, catches every room up
    from the store (by id), and then reads. When the connection is lost it
    starts over after a delay drawn uniformly between 0 and ``min(cap, base *
    2**failures)`` ("full jitter"): a thousand processes that lost the same Redis
    do not all come back in the same millisecond.

    redis-py's asyncio ``PubSub`` does re-send SUBSCRIBE when its connection
    reconnects (``PubSub.on_connect``), but only if it is read again after the
    error, and it never says a gap happened: whatever was published meanwhile is
    gone without a trace. This bus discards the ``PubSub`` on any error and does
    both itself.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        subscriber: redis.asyncio.Redis,
        store: RedisStore,
        *,
        backoff_base: float = BACKOFF_BASE,
        backoff_cap: float = BACKOFF_CAP,
        subscribe_timeout: float = SUBSCRIBE_TIMEOUT,
    ) -> None:
        self.client = client
        self.subscriber = subscriber
        self.store = store
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.subscribe_timeout = subscribe_timeout
        self.stats = BusStats()
        self._channels: dict[str, Channel] = {}
        self._count = 0
        self._pubsub: PubSub | None = None
        """The live subscriber connection (``None`` while (re)connecting)."""
        self._lock = asyncio.Lock()
        """Held while sending SUBSCRIBE/UNSUBSCRIBE or going live: one command at a time."""
        self._supervisor: asyncio.Task[None] | None = None
        self._closed = False
        self._epoch: str | None = None
        """The :data:`EPOCH_KEY` token found on the last connection (``None``: none yet)."""
        self._epoch_check: asyncio.Task[None] | None = None
        """A check of the token started by a message whose id was delivered already."""

    @property
    def subscriptions(self) -> int:
        """Open subscriptions in this process."""
        return self._count

    @property
    def connected(self) -> bool:
        """Whether the subscriber connection is up and caught up."""
        return self._pubsub is not None

    def figures(self) -> list[Figure]:
        """The subscriber's state and history, for ``GET /metrics``."""
        stats = self.stats
        return [
            Figure(
                "course_ws_bus_connected",
                "1 while the bus's subscriber is connected to Redis and caught up, else 0",
                lambda: float(self.connected),
            ),
            Figure(
                "course_ws_bus_connections",
                "Connections the bus's subscriber made to Redis (1 + reconnections)",
                lambda: stats.connections,
            ),
            Figure(
                "course_ws_bus_caught_up",
                "Messages delivered from the store because pub/sub missed them",
                lambda: stats.caught_up,
            ),
            Figure(
                "course_ws_bus_lost",
                "Messages pub/sub missed that the store no longer had",
                lambda: stats.lost,
            ),
            Figure(
                "course_ws_bus_resets",
                "Rooms whose ids started over because Redis lost its data (members resumed)",
                lambda: stats.resets,
            ),
        ]

    async def publish(self, room: str, event: str, message_id: int | None) -> None:
        """Send ``event`` to every process subscribed to ``room``.

        A message (with an id) that cannot be sent raises :class:`BrokerUnavailable`;
        presence (no id) is dropped with a log line, as pub/sub would drop it anyway.
        """
        payload = f"{'-' if message_id is None else message_id} {event}"
        try:
            await self.client.publish(channel(room), payload)
        except DISCONNECTED as exc:
            if message_id is not None:
                raise BrokerUnavailable(f"cannot publish to {safe_url(self.store.url)}") from exc
            logger.info("presence in %s lost while Redis is unreachable: %s", room, exc)

    async def subscribe(
        self, room: str, deliver: Delivery, resume: Resume | None = None
    ) -> RedisSubscription:
        """Deliver every later event of ``room``; returns once Redis confirmed the SUBSCRIBE.

        ``resume(reason)`` is called if the room's ids go back (Redis lost its data):
        every id delivered before then now names another message, or none.

        Raises :class:`BrokerUnavailable` if Redis does not confirm within the
        subscribe timeout (it is down): the subscription is then undone.
        """
        if self._closed:
            raise RuntimeError("the bus is closed")
        if self._supervisor is None:
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        subscription = RedisSubscription(self, room, deliver, resume)
        known = self._channels.get(room)
        state = known or Channel(room)
        state.subscriptions.add(subscription)
        self._count += 1
        try:
            if known is None:
                self._channels[room] = state
                async with self._lock:
                    if self._pubsub is not None:  # else the supervisor subscribes it on connecting
                        await self._pubsub.subscribe(channel(room))
            async with asyncio.timeout(self.subscribe_timeout):
                await state.confirmed.wait()
            if state.last_id is None:
                baseline = await self.store.last_id(room)
                state.last_id = max(state.last_id or 0, baseline)
        except BaseException as exc:
            await self.drop(subscription)
            if isinstance(exc, TimeoutError) or (
                isinstance(exc, DISCONNECTED) and not isinstance(exc, BrokerUnavailable)
            ):
                raise BrokerUnavailable(
                    f"the broker at {safe_url(self.store.url)} did not confirm a subscription"
                ) from exc
            raise
        return subscription

    async def drop(self, subscription: RedisSubscription) -> None:
        """Remove ``subscription`` (a no-op the second time); unsubscribe an empty room."""
        state = self._channels.get(subscription.room)
        if state is None or subscription not in state.subscriptions:
            return
        state.subscriptions.discard(subscription)
        self._count -= 1
        if state.subscriptions:
            return
        del self._channels[subscription.room]
        async with self._lock:
            if self._pubsub is not None:
                with contextlib.suppress(*DISCONNECTED):  # the supervisor is reconnecting
                    await self._pubsub.unsubscribe(channel(subscription.room))

    # -- the supervised subscriber ---------------------------------------------------------

    async def _supervise(self) -> None:
        failures = 0
        while True:
            pubsub = self.subscriber.pubsub()
            try:
                await self._connect(pubsub)
                self.stats.connections += 1
                if failures:
                    logger.warning(
                        "subscriber reconnected to %s after %d attempts; %d rooms caught up",
                        safe_url(self.store.url),
                        failures,
                        len(self._channels),
                    )
                failures = 0
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None:
                        await self._handle(message)
            except DISCONNECTED as exc:
                if failures == 0:
                    logger.warning(
                        "subscriber lost %s (%s); reconnecting", safe_url(self.store.url), exc
                    )
            except Exception:
                logger.exception("subscriber failed; reconnecting")
            finally:
                async with self._lock:
                    self._pubsub = None
                    for state in self._channels.values():
                        state.confirmed.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            failures += 1
            ceiling = min(self.backoff_cap, self.backoff_base * 2 ** min(failures, 30))
            await asyncio.sleep(random.uniform(0, ceiling))

    async def _connect(self, pubsub: PubSub) -> None:
        """Subscribe to every room, wait for Redis to confirm, catch up, then go live."""
        await pubsub.connect()  # type: ignore[no-untyped-call]
        await self._check_epoch()
        while True:
            rooms = [room for room, state in self._channels.items() if not state.confirmed.is_set()]
            if rooms:
                await pubsub.subscribe(*(channel(room) for room in rooms))
            waiting = {channel(room) for room in rooms}
            early: list[dict[str, Any]] = []
            async with asyncio.timeout(self.subscribe_timeout):
                while waiting:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        waiting.discard(message["channel"])
                    elif message["type"] == "message":
                        early.append(message)
            for room in rooms:
                state = self._channels.get(room)
                if state is not None:
                    await self._catch_up(state)
                    state.confirmed.set()
            for message in early:
                await self._handle(message)
            async with self._lock:  # rooms added meanwhile are subscribed on the next round
                if all(state.confirmed.is_set() for state in self._channels.values()):
                    self._pubsub = pubsub
                    return

    def _check_epoch_soon(self) -> None:
        """Check the token in the background, unless a check is under way already."""
        if self._epoch_check is None or self._epoch_check.done():
            self._epoch_check = asyncio.get_running_loop().create_task(self._recheck_epoch())

    async def _recheck_epoch(self) -> None:
        try:
            await self._check_epoch()
        except DISCONNECTED as exc:  # the supervisor reconnects, and checks again then
            logger.info("could not check %s's token: %s", safe_url(self.store.url), exc)

    async def _check_epoch(self) -> None:
        """Read (or set) the :data:`EPOCH_KEY` token; if it changed, Redis lost its data:
        every room starts over and its members resume."""
        await self.client.set(EPOCH_KEY, secrets.token_hex(8), nx=True)
        epoch = str(await self.client.get(EPOCH_KEY))  # decoded: the client decodes replies
        previous, self._epoch = self._epoch, epoch
        if previous is None or epoch == previous:
            return
        logger.warning(
            "%s lost its data (no append-only file?): closing the members of %d room(s) "
            "with 1012 to resume",
            safe_url(self.store.url),
            len(self._channels),
        )
        for state in self._channels.values():
            if state.last_id is not None:
                self.stats.resets += 1
                state.last_id = 0
                self._resume(state, RESET)

    async def _catch_up(self, state: Channel, upto: int | None = None) -> None:
        """Deliver what the store has after the room's last delivered id (up to ``upto``)."""
        if state.last_id is None:
            return  # subscribe() has not read the baseline yet: nothing was promised
        last_id, missed = await self.store.replay(state.room, state.last_id)
        if last_id < state.last_id:
            self.stats.resets += 1
            logger.warning(
                "room %s went back from id %d to %d: Redis lost its data (no append-only file?)",
                state.room,
                state.last_id,
                last_id,
            )
            state.last_id = 0
            self._resume(state, RESET)
        for message in missed:
            if upto is not None and message.id > upto:
                break
            if message.id <= state.last_id:
                continue
            if message.id > state.last_id + 1:
                self.stats.lost += message.id - state.last_id - 1
                logger.warning(
                    "room %s: messages %d..%d were trimmed from the history before delivery",
                    state.room,
                    state.last_id + 1,
                    message.id - 1,
                )
            self.stats.caught_up += 1
            self._deliver(state, message.event, message.id)

    async def _handle(self, message: dict[str, Any]) -> None:
        """One pub/sub message: deliver it, after filling any gap before it from the store."""
        kind = message["type"]
        if kind not in ("message", "subscribe"):
            return
        state = self._channels.get(message["channel"].removeprefix(f"{PREFIX}:room:"))
        if state is None:
            return  # unsubscribed meanwhile
        if kind == "subscribe":  # confirms a subscribe() made while connected
            state.confirmed.set()
            return
        head, _, event = message["data"].partition(" ")
        if head == "-":
            self._deliver(state, event, None)
            return
        message_id = int(head)
        if state.last_id is not None:
            if message_id <= state.last_id:
                # Delivered already, by a catch-up (rare: only around a reconnection)... or
                # the ids started over while the subscriber stayed connected (FLUSHALL).
                self._check_epoch_soon()
                return
            if message_id > state.last_id + 1:
                await self._catch_up(state, upto=message_id - 1)
        self._deliver(state, event, message_id)

    def _resume(self, state: Channel, reason: str) -> None:
        for subscription in list(state.subscriptions):
            if subscription.resume is not None:
                try:
                    subscription.resume(reason)
                except Exception:
                    logger.exception("resuming the members of %s failed", state.room)

    def _deliver(self, state: Channel, event: str, message_id: int | None) -> None:
        if message_id is not None:
            state.last_id = message_id
        for subscription in list(state.subscriptions):
            try:
                subscription.deliver(event, message_id)
            except Exception:  # one bad callback must not stop the others, nor the bus
                logger.exception("delivering to a subscriber of %s failed", state.room)

    async def aclose(self) -> None:
        """Stop the subscriber, forget every subscription, close its connection."""
        self._closed = True
        if self._epoch_check is not None:
            self._epoch_check.cancel()
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        self._channels.clear()
        self._count = 0
        await self.subscriber.aclose()


class RedisBroker(Broker):
    """The Redis store and bus: a message is stored and published by one atomic script."""

    async def publish_message(self, room: str, user: str, text: str) -> Message:
        """Store the message (it gets its id) and publish it, in one step inside Redis.

        Two steps (append, then publish) would let two processes publish ids 7
        and 8 in the order 8, 7; one script publishes every room's ids in order.
        """
        store = self.store
        assert isinstance(store, RedisStore)
        return await store.append(room, user, text, publish=True)


def open_redis_broker(
    url: str,
    *,
    history_size: int = DEFAULT_HISTORY,
    history_bytes: int = DEFAULT_HISTORY_BYTES,
    idle_ttl: int = IDLE_TTL,
    backoff: Sequence[float] = (BACKOFF_BASE, BACKOFF_CAP),
) -> RedisBroker:
    """A broker on the Redis at ``url``; :class:`BrokerUnavailable` if it does not answer.

    Checks once, blocking at most :data:`CONNECT_TIMEOUT`, that Redis answers,
    so that a server fails at start, with one line, rather than serve and fail
    every join. Connections are then opened as needed: two per process at
    least (commands, and the subscriber).
    """
    check_reachable(url)
    client = command_client(url)
    subscriber = redis.asyncio.Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_keepalive=True,
        retry=Retry(NoBackoff(), 0),  # the bus's supervisor reconnects, nobody else
    )
    store = RedisStore(client, url, history_size, history_bytes, idle_ttl)
    base, cap = backoff
    bus = RedisBus(client, subscriber, store, backoff_base=base, backoff_cap=cap)
    return RedisBroker(store, bus)


__all__ = [
    "RedisBroker",
    "RedisBus",
    "RedisStore",
    "open_redis_broker",
]
