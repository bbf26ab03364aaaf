"""The broker contract, for every broker URL: ``memory://`` and a real ``redis://``.

The Redis runs are real: a ``redis-server`` started on a free loopback port for
this module (skipped, loudly, where it is not installed; failed under ``CI=true``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from course_ws.chat.brokers import Broker, open_broker
from course_ws.chat.brokers.memory import MemoryStore
from course_ws.hosting.programs import find_program
from course_ws.hosting.redis_server import RedisServer, run_redis

BROKERS = ["memory", "redis"]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


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


@pytest.fixture(params=BROKERS)
async def broker(request: pytest.FixtureRequest):
    url = "memory://"
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        with redis.Redis.from_url(server.url) as client:
            client.flushdb()
        url = server.url
    opened = open_broker(url, history_size=5, history_bytes=10_000)
    yield opened
    await opened.aclose()


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds (a memory bus delivers at once, Redis within ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not delivered in time"
        await asyncio.sleep(0.002)


async def test_ids_strictly_increase_per_room(broker: Broker):
    ids = [(await broker.publish_message("a", "ada", f"m{n}")).id for n in range(3)]
    other = (await broker.publish_message("b", "ada", "x")).id
    assert ids == [1, 2, 3]
    assert other == 1


async def test_replay_returns_what_came_after_since(broker: Broker):
    for number in range(1, 9):
        await broker.publish_message("a", "ada", f"m{number}")
    last_id, missed = await broker.store.replay("a", 5)
    assert last_id == 8
    assert [m.text for m in missed] == ["m6", "m7", "m8"]
    assert (await broker.store.replay("a", None)) == (8, [])
    _, everything = await broker.store.replay("a", 0)
    assert [m.id for m in everything] == [4, 5, 6, 7, 8]  # history_size=5
    _, from_before_a_restart = await broker.store.replay("a", 99)
    assert [m.id for m in from_before_a_restart] == [4, 5, 6, 7, 8]


async def test_replayed_messages_are_the_ones_published(broker: Broker):
    said = [await broker.publish_message("a", "ada", text) for text in ("hi", "é ✓ 🎉", '"q"\n')]
    _, replayed = await broker.store.replay("a", 0)
    assert replayed == said
    assert [m.event for m in replayed] == [m.event for m in said]


async def test_a_subscriber_gets_every_later_event_in_order(broker: Broker):
    seen: list[tuple[str, int | None]] = []
    await broker.publish_message("a", "ada", "before")
    subscription = await broker.bus.subscribe("a", lambda event, mid: seen.append((event, mid)))
    assert broker.bus.subscriptions == 1
    await broker.publish_message("a", "ada", "one")
    await broker.bus.publish("a", "presence", None)
    await broker.publish_message("b", "ada", "elsewhere")
    await broker.publish_message("a", "ada", "two")
    await until(lambda: len(seen) >= 3)
    assert [mid for _, mid in seen] == [2, None, 3]
    assert seen[1] == ("presence", None)
    await subscription.cancel()
    await subscription.cancel()  # idempotent
    assert broker.bus.subscriptions == 0
    marker: list[int | None] = []
    await broker.bus.subscribe("z", lambda event, mid: marker.append(mid))
    await broker.publish_message("a", "ada", "three")
    await broker.publish_message("z", "ada", "after three")  # same connection: arrives later
    await until(lambda: marker == [1])
    assert len(seen) == 3


def test_an_unknown_scheme_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match=r"memory://, redis://"):
        open_broker("carrier-pigeon://loft")


async def test_idle_rooms_are_capped_in_count_and_bytes_and_held_rooms_are_kept():
    store = MemoryStore(
        history_size=100, history_bytes=10_000, max_idle_rooms=3, max_idle_bytes=5000
    )
    store.hold("busy")
    for number in range(20):
        await store.append("busy", "ada", "x" * 100)
        await store.append(f"idle-{number}", "ada", "x" * 100)
    assert store.rooms <= 4
    assert (await store.replay("busy", None))[0] == 20
    for _ in range(5):
        await store.append("big", "ada", "x" * 2000)  # over the idle byte cap by itself
    assert store.rooms <= 4
    store.release("busy")
    for number in range(3):
        await store.append(f"later-{number}", "ada", "x")
    assert store.rooms == 3
    kept = 0
    for room in ("busy", "later-0", "later-1", "later-2"):
        kept += sum(message.size for message in (await store.replay(room, 0))[1])
    assert store.bytes == kept
