"""The Redis broker against a real ``redis-server``: atomic ids, bounded history, TTLs,
the supervised subscriber and its catch-up by id, and failing fast when Redis is absent.

The contract every broker obeys is in ``tests/chat/test_brokers.py`` (run against
Redis too); these are what only Redis has.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from course_ws.chat.brokers import BrokerUnavailable, open_broker
from course_ws.chat.brokers.redis import (
    RESET,
    RedisBroker,
    RedisBus,
    RedisStore,
    event_parts,
    log_key,
    meta_key,
    open_redis_broker,
)
from course_ws.chat.protocol import Message
from course_ws.hosting.programs import find_program
from course_ws.hosting.redis_server import RedisServer, free_loopback_port, run_redis

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
pytestmark = pytest.mark.service("redis-server")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server for the module; skip loudly if absent, fail under CI=true."""
    if find_program("redis-server") is None:
        message = "redis-server is not installed (apt-get install redis-server): no Redis run"
        if IN_CI:
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    with run_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def url(redis_server: RedisServer) -> str:
    """The server's URL, its database empty."""
    with redis.Redis.from_url(redis_server.url) as client:
        client.flushdb()
    return redis_server.url


@pytest.fixture
def raw(url: str) -> Iterator[redis.Redis]:
    """A plain client, to look at the keys."""
    with redis.Redis.from_url(url, decode_responses=True) as client:
        yield client


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


def redis_parts(broker: RedisBroker) -> tuple[RedisStore, RedisBus]:
    assert isinstance(broker.store, RedisStore)
    assert isinstance(broker.bus, RedisBus)
    return broker.store, broker.bus


# -- the store -------------------------------------------------------------------------


async def test_concurrent_appends_from_two_processes_get_distinct_consecutive_ids(url, raw):
    first, second = open_broker(url, history_size=1000), open_broker(url, history_size=1000)
    try:
        said = await asyncio.gather(
            *(
                b.publish_message("race", "ada", f"m{n}")
                for n in range(300)
                for b in (first, second)
            )
        )
        assert sorted(m.id for m in said) == list(range(1, 601))
        last_id, replayed = await first.store.replay("race", 0)
        assert last_id == 600
        assert [m.id for m in replayed] == list(range(1, 601))
        assert {m.id: m for m in said} == {m.id: m for m in replayed}
        assert int(raw.hget(meta_key("race"), "id")) == raw.llen(log_key("race")) == 600
    finally:
        await first.aclose()
        await second.aclose()


async def test_history_is_bounded_in_bytes_as_stored_and_keeps_the_newest(url, raw):
    broker = open_broker(url, history_size=1000, history_bytes=1000)
    try:
        for n in range(50):
            await broker.publish_message("bytes", "ada", f"{n:03d}" + "é" * 40)
        events = raw.lrange(log_key("bytes"), 0, -1)
        stored = sum(len(event.encode()) for event in events)
        assert stored <= 1000 < stored + len(events[0].encode())  # trimmed no more than needed
        assert int(raw.hget(meta_key("bytes"), "bytes")) == stored
        huge = await broker.publish_message("bytes", "ada", "x" * 3000)  # over the bound alone
        _, replayed = await broker.store.replay("bytes", 0)
        assert replayed == [huge]
    finally:
        await broker.aclose()


def test_the_event_built_inside_redis_is_the_message_event():
    for text in ("hi", 'quote " and {"id":0,}', "é ✓ 🎉\n"):
        head, tail = event_parts("lobby", "ada", text, 1.5)
        assert head + "42" + tail == Message(42, "lobby", "ada", text, 1.5).event


async def test_idle_rooms_expire_held_rooms_do_not_and_an_expired_room_starts_over(url, raw):
    broker = open_redis_broker(url, idle_ttl=4)
    store, _ = redis_parts(broker)
    try:
        for room in ("kept", "gone"):
            for n in range(3):
                await broker.publish_message(room, "ada", f"m{n}")
        store.hold("kept")  # as a join does: hold, then replay
        await store.replay("kept", None)
        assert store.rooms == 1
        assert 0 < store.bytes == int(raw.hget(meta_key("kept"), "bytes"))
        await asyncio.sleep(5.0)  # past the TTL; the keeper renews "kept" every second
        assert raw.exists(meta_key("gone"), log_key("gone")) == 0
        assert (await store.replay("kept", 0))[0] == 3
        assert (await broker.publish_message("gone", "ada", "again")).id == 1
        store.release("kept")
        assert (store.rooms, store.bytes) == (0, 0)
    finally:
        await broker.aclose()


async def test_a_room_missing_one_of_its_keys_starts_over_consistently(url, raw):
    broker = open_broker(url)
    try:
        for n in range(3):
            await broker.publish_message("evicted", "ada", f"m{n}")
        raw.delete(log_key("evicted"))  # the history alone was evicted: ids go on
        assert (await broker.publish_message("evicted", "ada", "next")).id == 4
        assert int(raw.hget(meta_key("evicted"), "bytes")) == len(
            raw.lindex(log_key("evicted"), 0).encode()
        )
        raw.delete(meta_key("evicted"))  # the counter alone: the history goes with it
        assert (await broker.publish_message("evicted", "ada", "anew")).id == 1
        assert [m.text for m in (await broker.store.replay("evicted", 0))[1]] == ["anew"]
    finally:
        await broker.aclose()


# -- the bus ----------------------------------------------------------------------------


async def test_a_message_said_in_one_process_reaches_the_others_in_id_order(url):
    speakers = [open_broker(url) for _ in range(3)]
    listener = open_broker(url)
    seen: list[int | None] = []
    try:
        await listener.bus.subscribe("lobby", lambda event, mid: seen.append(mid))
        await asyncio.gather(
            *(s.publish_message("lobby", "ada", f"{n}") for n in range(100) for s in speakers)
        )
        await until(lambda: len(seen) == 300)
        assert seen == list(range(1, 301))  # published inside the append script: in id order
    finally:
        for broker in (*speakers, listener):
            await broker.aclose()


async def test_a_message_pubsub_missed_is_filled_in_from_the_store_before_the_next(url):
    broker = open_broker(url)
    store, bus = redis_parts(broker)
    seen: list[int | None] = []
    try:
        await bus.subscribe("gap", lambda event, mid: seen.append(mid))
        await broker.publish_message("gap", "ada", "one")
        await store.append("gap", "ada", "stored, never published")  # what pub/sub loses
        await broker.publish_message("gap", "ada", "three")
        await until(lambda: len(seen) == 3)
        assert seen == [1, 2, 3]
        assert bus.stats.caught_up == 1
    finally:
        await broker.aclose()


async def test_after_a_lost_connection_the_subscriber_resubscribes_and_catches_up(url, raw):
    broker = open_redis_broker(url, backoff=(0.05, 0.2))
    store, bus = redis_parts(broker)
    seen: list[tuple[str, int | None]] = []
    try:
        await bus.subscribe("lobby", lambda event, mid: seen.append((event, mid)))
        await broker.publish_message("lobby", "ada", "before")
        await until(lambda: len(seen) == 1)
        killed = raw.client_kill_filter(_type="pubsub")
        assert killed == 1
        missed = [await store.append("lobby", "ada", f"missed {n}") for n in range(5)]
        await until(lambda: len(seen) == 6)  # only a catch-up from the store can bring these
        assert [mid for _, mid in seen] == [1, 2, 3, 4, 5, 6]
        assert [event for event, _ in seen[1:]] == [m.event for m in missed]
        await until(lambda: bus.connected)
        await broker.publish_message("lobby", "ada", "after")  # live again: resubscribed
        await until(lambda: len(seen) == 7)
        assert seen[-1][1] == 7
        assert bus.stats.connections == 2
        assert bus.stats.caught_up == 5
        figures = {figure.name: figure.read() for figure in bus.figures()}  # at GET /metrics
        assert figures == {
            "course_ws_bus_connected": 1,
            "course_ws_bus_connections": 2,
            "course_ws_bus_caught_up": 5,
            "course_ws_bus_lost": 0,
            "course_ws_bus_resets": 0,
        }
    finally:
        await broker.aclose()


async def test_subscribing_returns_only_once_redis_confirmed_it(url):
    speaker, listener = open_broker(url), open_broker(url)
    try:
        for number in range(20):  # a fresh room each time: a fresh SUBSCRIBE each time
            seen: list[int | None] = []
            room = f"room-{number}"
            await listener.bus.subscribe(room, lambda event, mid, seen=seen: seen.append(mid))
            await speaker.publish_message(room, "ada", "right after")
            await until(lambda seen=seen: seen == [1])
    finally:
        await speaker.aclose()
        await listener.aclose()


# -- Redis absent or gone ---------------------------------------------------------------


def test_an_unreachable_redis_fails_fast_with_one_line_naming_it_without_the_password():
    port = free_loopback_port()
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as raised:
        open_broker(f"redis://:s3cret@127.0.0.1:{port}/3")
    assert time.monotonic() - started < 3
    message = str(raised.value)
    assert message.startswith(f"cannot reach the broker at redis://127.0.0.1:{port}/3: ")
    assert "\n" not in message
    assert "s3cret" not in message


async def test_while_redis_is_down_saying_fails_presence_is_dropped_and_it_recovers(tmp_path):
    if find_program("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with run_redis(tmp_path) as server:
        broker = open_redis_broker(server.url, backoff=(0.05, 0.2))
        store, bus = redis_parts(broker)
        seen: list[int | None] = []
        resumed: list[str] = []
        try:
            await bus.subscribe("lobby", lambda event, mid: seen.append(mid), resumed.append)
            await broker.publish_message("lobby", "ada", "one")
            await asyncio.to_thread(server.stop)
            started = time.monotonic()
            with pytest.raises(BrokerUnavailable):
                await broker.publish_message("lobby", "ada", "lost? no: refused")
            with pytest.raises(BrokerUnavailable):
                await bus.subscribe("elsewhere", lambda event, mid: None)
            assert time.monotonic() - started < 15
            await bus.publish("lobby", '{"type":"leave"}', None)  # presence: dropped, no error
            await asyncio.to_thread(server.start)
            await broker.publish_message("lobby", "ada", "two")
            await until(lambda: seen == [1, 2])
            assert (await store.replay("lobby", 0))[0] == 2  # append-only file: nothing lost
            assert resumed == []  # the ids went on: nobody needs to resume
        finally:
            await broker.aclose()


async def test_a_redis_that_lost_its_data_has_each_room_resume_once(tmp_path):
    """Restarted without an append-only file, Redis starts every room's ids over. The bus
    must say so (its rooms' members then resume with 1012) even when the room said more
    since than before, so that its ids did not go back: the epoch token tells."""
    if find_program("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with run_redis(tmp_path, appendonly=False) as server:
        broker = open_redis_broker(server.url, backoff=(0.5, 1.0))
        store, bus = redis_parts(broker)
        seen: list[int | None] = []
        resumed: list[str] = []
        try:
            await bus.subscribe("lobby", lambda event, mid: seen.append(mid), resumed.append)
            for number in range(3):
                await broker.publish_message("lobby", "ada", f"before {number}")
            await until(lambda: seen == [1, 2, 3])
            await asyncio.to_thread(server.restart)
            for number in range(5):  # likely before the subscriber is back: ids 1..5 > 3
                await store.append("lobby", "ada", f"after {number}")
            await until(lambda: resumed == [RESET])
            await until(lambda: seen == [1, 2, 3, 1, 2, 3, 4, 5])  # the new ids, in order
            assert bus.stats.resets == 1
            await broker.publish_message("lobby", "ada", "live again")
            await until(lambda: seen[-1] == 6)
            assert resumed == [RESET]
        finally:
            await broker.aclose()


async def test_a_redis_flushed_under_a_connected_subscriber_has_each_room_resume(url, raw):
    """No reconnection to notice it by: the first message with an id delivered already
    has the bus look at the epoch token, gone with the flush."""
    broker = open_redis_broker(url)
    _, bus = redis_parts(broker)
    seen: list[int | None] = []
    resumed: list[str] = []
    try:
        await bus.subscribe("lobby", lambda event, mid: seen.append(mid), resumed.append)
        for number in range(3):
            await broker.publish_message("lobby", "ada", f"before {number}")
        await until(lambda: seen == [1, 2, 3])
        raw.flushall()
        await broker.publish_message("lobby", "ada", "after the flush")  # id 1 again
        await until(lambda: resumed == [RESET])
        await broker.publish_message("lobby", "ada", "and on")  # id 2: 1 is filled first
        await until(lambda: seen == [1, 2, 3, 1, 2])
        assert bus.stats.connections == 1  # the subscriber never reconnected
        assert resumed == [RESET]
    finally:
        await broker.aclose()
