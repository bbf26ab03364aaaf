"""Checks for exercise ``redis_subscriber`` (exercises/06_scaling/redis_subscriber.py).

Against a real ``redis-server`` on a free 127.0.0.1 port, started for these checks
(:mod:`course_ws.hosting.redis_server`, its append-only file on: what it accepted
survives its restarts), and restarted in the middle of some. Messages are
written by the package's own Redis store, ``RedisStore.append``, which gives each
its room's next id and publishes it in the same atomic step — as every worker of
a chat server does. Redis's own bookkeeping (``PUBSUB NUMSUB``) says who is
subscribed. Without ``redis-server`` every check is skipped with how to install
it; under ``CI=true`` they fail instead. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio

from course_ws.chat.brokers.redis import RedisStore, channel, command_client
from course_ws.clients import wait_until
from course_ws.clients.probes import fresh_room
from course_ws.hosting.programs import find_program
from course_ws.hosting.redis_server import RedisServer

pytestmark = pytest.mark.service("redis-server")

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
TIMEOUT = 5.0
"""Seconds for what should take milliseconds (a restart of Redis and a reconnection included)."""
QUIET = 0.3
"""Seconds of silence that count as "nothing more arrived"."""


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for these checks; skipped, saying why, if it is not installed."""
    if find_program("redis-server") is None:
        reason = (
            "redis-server is not installed, so these checks cannot run: "
            "apt-get install redis-server (or conda install -c conda-forge redis-server)"
        )
        if IN_CI:
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)
    server = RedisServer(Path(tmp_path_factory.mktemp("redis")))
    with server:
        yield server


@dataclass
class Received:
    """What the learner's subscriber delivered and reported."""

    ids: dict[str, list[int | None]] = field(default_factory=lambda: defaultdict(list))
    events: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    gaps: list[Any] = field(default_factory=list)

    def deliver(self, room: str, message_id: int | None, event: str) -> None:
        self.ids[room].append(message_id)
        self.events[room].append(event)


class RecordingBackoff:
    """A ``backoff`` for the subscriber: fixed short delays, every draw recorded.

    Each call starts a new sequence; ``draws`` holds ``(sequence, index)`` per delay drawn.
    """

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.sequences = 0
        self.draws: list[tuple[int, int]] = []

    def __call__(self) -> Generator[float]:
        self.sequences += 1
        sequence = self.sequences
        index = 0
        while True:
            self.draws.append((sequence, index))
            index += 1
            yield self.delay


@dataclass
class Setup:
    server: RedisServer
    store: RedisStore
    make: Callable[..., Any]

    async def restart(self) -> None:
        """Stop Redis (every connection to it is lost) and start it again, same port."""
        await asyncio.to_thread(self.server.restart)

    async def subscribers(self, room: str) -> int:
        """How many connections Redis counts as subscribed to ``room``'s channel."""
        # A connection of its own each time: a pooled one would be stale after a restart.
        async with redis.asyncio.Redis.from_url(self.server.url) as client:
            counts = await client.pubsub_numsub(channel(room))
        return int(counts[0][1])

    async def say(self, room: str, text: str, *, publish: bool = True) -> int:
        """Store a message (it gets the room's next id) and publish it, as a worker does."""
        message = await self.store.append(room, "ada", text, publish=publish)
        return message.id


@pytest.fixture
async def setup(redis_server: RedisServer, load: Callable[[str], Any]) -> AsyncIterator[Setup]:
    """The learner's ``RoomSubscriber`` class and a store; every subscriber
    made is closed at the end, whatever happened."""
    redis_server.start()  # a check that failed while Redis was down left it stopped
    module = load("redis_subscriber")
    made: list[Any] = []

    def make(received: Received, **options: Any) -> Any:
        subscriber = module.RoomSubscriber(
            redis_server.url,
            store,
            received.deliver,
            on_gap=received.gaps.append,
            **options,
        )
        made.append(subscriber)
        return subscriber

    store = RedisStore(command_client(redis_server.url), redis_server.url)
    try:
        yield Setup(redis_server, store, make)
    finally:
        for subscriber in made:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(TIMEOUT):
                    await subscriber.aclose()
        await store.aclose()


async def subscribe(subscriber: Any, room: str) -> None:
    """``await subscriber.subscribe(room)``, bounded; a clear failure if it hangs or raises."""
    try:
        async with asyncio.timeout(TIMEOUT):
            await subscriber.subscribe(room)
    except TimeoutError:
        pytest.fail(f"subscribe({room!r}) did not return within {TIMEOUT:g} s")
    except NotImplementedError:
        pytest.fail(f"subscribe({room!r}) is not written yet (NotImplementedError)")


async def delivered(received: Received, room: str, count: int, after: str) -> list[int | None]:
    """The ids delivered in ``room`` once there are ``count`` of them; a failure if not."""
    try:
        await wait_until(lambda: len(received.ids[room]) >= count, within=TIMEOUT)
    except TimeoutError:
        got = received.ids[room]
        pytest.fail(
            f"{after}: expected {count} messages delivered in room {room}, "
            f"got {len(got)} (ids {got}) within {TIMEOUT:g} s"
        )
    await asyncio.sleep(QUIET)  # and nothing more: no message delivered twice
    return received.ids[room]


async def eventually(holds: Callable[[], Awaitable[bool]], *, within: float = TIMEOUT) -> bool:
    """Whether ``await holds()`` became true within ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        if await holds():
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)


async def resubscribed(setup: Setup, *rooms: str) -> None:
    """Wait until Redis counts one subscriber for each room again (after a restart)."""

    async def all_subscribed() -> bool:
        return all([await setup.subscribers(room) == 1 for room in rooms])

    if not await eventually(all_subscribed):
        counts = [await setup.subscribers(room) for room in rooms]
        pytest.fail(
            f"Redis restarted; {TIMEOUT:g} s later it counts {counts} subscribers for the rooms "
            f"{list(rooms)}: nobody reconnected and subscribed them again"
        )


def text_of(event: Any) -> Any:
    """The ``text`` of a message event (JSON text), or what was delivered instead."""
    try:
        return json.loads(event)["text"]
    except (TypeError, ValueError, KeyError):
        return event


async def test_subscribe_returns_once_redis_confirmed(setup):
    """subscribe() returns only once Redis confirmed: at that moment Redis counts the subscriber"""
    received = Received()
    subscriber = setup.make(received)
    for room in (fresh_room(), fresh_room()):
        await subscribe(subscriber, room)
        counted = await setup.subscribers(room)
        assert counted == 1, (
            f"subscribe({room!r}) returned, but Redis counts {counted} subscribers of its "
            "channel: return only once Redis confirmed the SUBSCRIBE (a message published "
            "now would be lost)"
        )


async def test_messages_arrive_once_in_order_per_room(setup):
    """Messages published to two rooms reach deliver once each, in id order, with their event"""
    received = Received()
    subscriber = setup.make(received)
    rooms = [fresh_room(), fresh_room()]
    for room in rooms:
        await subscribe(subscriber, room)
    for number in range(3):
        for room in rooms:
            await setup.say(room, f"hello {number}")
    for room in rooms:
        got = await delivered(received, room, 3, "3 messages published to each of two rooms")
        assert got == [1, 2, 3], f"room {room}: expected ids [1, 2, 3] delivered once, got {got}"
        texts = [text_of(event) for event in received.events[room]]
        assert texts == ["hello 0", "hello 1", "hello 2"], (
            f"room {room}: expected the events of 'hello 0', 'hello 1', 'hello 2', got "
            f"{received.events[room]}"
        )


async def test_after_a_restart_every_room_is_subscribed_again(setup):
    """Redis restarts: every room is subscribed again, messages before and after it arrive"""
    received = Received()
    subscriber = setup.make(received)
    rooms = [fresh_room(), fresh_room()]
    for room in rooms:
        await subscribe(subscriber, room)
        await setup.say(room, "before")
    for room in rooms:
        await delivered(received, room, 1, "a message before the restart")
    await setup.restart()
    await resubscribed(setup, *rooms)
    for room in rooms:
        await setup.say(room, "after")
    for room in rooms:
        got = await delivered(received, room, 2, "a message before the restart, one after")
        assert got == [1, 2], f"room {room}: expected ids [1, 2] across the restart, got {got}"


async def test_after_a_restart_what_pubsub_lost_is_caught_up_and_reported(setup):
    """After a restart each room catches up from the store by id, and a Gap names each room"""
    received = Received()
    subscriber = setup.make(received)
    spoken, quiet = fresh_room(), fresh_room()
    for room in (spoken, quiet):
        await subscribe(subscriber, room)
    await setup.say(spoken, "live")
    await delivered(received, spoken, 1, "a message published while connected")
    # Pub/sub is at-most-once: what is published while a subscriber is away never reaches
    # it. Store messages without publishing them, as if they had been published then.
    for room, texts in [(spoken, ["missed 2", "missed 3"]), (quiet, ["missed 1"])]:
        for text in texts:
            await setup.say(room, text, publish=False)
    await setup.restart()
    await resubscribed(setup, spoken, quiet)
    after = "Redis restarted; meanwhile pub/sub lost messages 2, 3 of one room and 1 of another"
    for room, ids in [(spoken, [1, 2, 3]), (quiet, [1])]:
        got = await delivered(received, room, len(ids), after)
        assert got == ids, (
            f"{after}: expected ids {ids} in room {room} (caught up from the store by id), "
            f"got {got}"
        )
    gaps = {getattr(gap, "room", None): gap for gap in received.gaps}
    for room, last, caught_up in [(spoken, 1, 2), (quiet, 0, 1)]:
        gap = gaps.get(room)
        assert gap is not None, (
            f"{after}: expected a Gap for room {room}, got {received.gaps} "
            "(call on_gap for every room after a reconnection)"
        )
        assert (gap.after, gap.caught_up) == (last, caught_up), (
            f"{after}: expected Gap({room!r}, after={last}, caught_up={caught_up}), got {gap}"
            + (" (read the room's baseline in subscribe)" if room == quiet else "")
        )
    await setup.say(spoken, "live again")
    got = await delivered(received, spoken, 4, "then one more message, live")
    assert got == [1, 2, 3, 4], f"expected ids [1, 2, 3, 4], each once, got {got}"


async def test_while_redis_is_down_it_retries_with_the_backoff(setup):
    """While Redis is down it retries after each delay of backoff(), a fresh sequence each time"""
    received = Received()
    backoff = RecordingBackoff(delay=0.05)
    subscriber = setup.make(received, backoff=backoff)
    room = fresh_room()
    await subscribe(subscriber, room)
    down_for = 0.5
    for outage in (1, 2):
        drawn = len(backoff.draws)
        await asyncio.to_thread(setup.server.restart, down_for=down_for)
        await resubscribed(setup, room)
        draws = backoff.draws[drawn:]
        assert len(draws) >= 2, (
            f"outage {outage}: Redis was down {down_for:g} s and only {len(draws)} delays were "
            "drawn: after each failed attempt, await asyncio.sleep(next(delays))"
        )
        assert len(draws) <= down_for / backoff.delay * 2 + 10, (
            f"outage {outage}: {len(draws)} delays drawn in {down_for:g} s of delays of "
            f"{backoff.delay:g} s: is it sleeping between attempts?"
        )
        assert draws[0][1] == 0, (
            f"outage {outage}: its first delay was #{draws[0][1]} of an old sequence: "
            "take a fresh one, delays = self.backoff(), once a connection worked"
        )
        await setup.say(room, f"after outage {outage}")  # delivered: live again
        got = await delivered(received, room, outage, f"a message after outage {outage}")
        expected = list(range(1, outage + 1))
        assert got == expected, f"after outage {outage}: expected ids {expected}, got {got}"


async def test_aclose_leaves_nothing_behind(setup):
    """aclose() ends the supervisor task and the connection, even while Redis is down"""
    for redis_down in (False, True):
        before = asyncio.all_tasks()
        received = Received()
        subscriber = setup.make(received)
        room = fresh_room()
        await subscribe(subscriber, room)
        situation = "while Redis is down" if redis_down else "while connected"
        if redis_down:
            await asyncio.to_thread(setup.server.stop)
            await asyncio.sleep(0.2)  # the subscriber noticed, and is between attempts
        try:
            async with asyncio.timeout(TIMEOUT):
                await subscriber.aclose()
        except TimeoutError:
            pytest.fail(f"aclose() {situation} did not return within {TIMEOUT:g} s")
        left = [task.get_name() for task in asyncio.all_tasks() - before]
        assert not left, f"after aclose() {situation}, tasks still exist: {left}"
        if redis_down:
            await asyncio.to_thread(setup.server.start)
            await asyncio.sleep(QUIET)

        async def unsubscribed(room: str = room) -> bool:
            return await setup.subscribers(room) == 0

        assert await eventually(unsubscribed), (
            f"after aclose() {situation}, Redis still counts a subscriber of the room "
            f"{TIMEOUT:g} s later: close the connection"
        )
