"""The ``channels`` server on ``channels_redis`` (``--broker redis://...``), with a real Redis.

- The bus over ``RedisChannelLayer``: what the layer drops at its capacity, and what
  arrives out of order (two processes publishing), is filled from the store by id,
  with no member closed; a store that no longer has it makes the room resume (1012).
- Two ``course-ws serve channels --broker redis://... --database FILE`` processes on
  one Redis and one SQLite file: members of each hear the other's, with ids that
  go on by one, given by the database.
- Redis restarted mid-run while both keep talking: every member gets every id
  exactly once, in order — live, or after a 1012 and a resume with ``?since=``.
- Redis unreachable at start: one line, status 1, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from channels_redis.core import RedisChannelLayer
from serving import course_ws_serve
from websockets.exceptions import ConnectionClosed

from course_ws.chat.brokers import Broker
from course_ws.chat.brokers.memory import MemoryStore
from course_ws.clients.chat import ChatClient
from course_ws.clients.probes import COURSE_WS, fresh_room
from course_ws.clients.waiting import wait_until
from course_ws.hosting.programs import find_program
from course_ws.hosting.redis_server import RedisServer, free_loopback_port, run_redis
from course_ws.servers._channels.bus import EVENT_TYPE, LOST_ON_THE_BUS, ChannelLayerBus, group_for
from course_ws.servers._channels.settings import (
    REDIS_LAYER,
    REDIS_PREFIX,
    channel_layer_config,
)

UNLIMITED = ["--message-rate", "1000", "--message-burst", "1000"]
"""Every client here is 127.0.0.1: the per-address message rate must not refuse the test's."""
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
pytestmark = pytest.mark.service("redis-server")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of this test's own; skip loudly if absent, fail under CI=true."""
    if find_program("redis-server") is None:
        message = "redis-server is not installed (apt-get install redis-server): no Redis run"
        if IN_CI:
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    with run_redis(tmp_path / "redis") as server:
        yield server


# -- the bus on RedisChannelLayer ------------------------------------------------------------


def redis_layer(url: str, **tuning: int) -> RedisChannelLayer:
    """The layer ``--broker url`` gives a server, with some of its tuning changed."""
    config = channel_layer_config(url)
    assert config["BACKEND"] == REDIS_LAYER
    return RedisChannelLayer(**{**config["CONFIG"], **tuning})


class Received:
    """What one subscription delivered, by id."""

    def __init__(self) -> None:
        self.ids: list[int | None] = []
        self.arrived = asyncio.Event()

    def __call__(self, event: str, message_id: int | None) -> None:
        self.ids.append(message_id)
        self.arrived.set()

    async def wait_for(self, count: int, within: float = 10.0) -> None:
        async with asyncio.timeout(within):
            while len(self.ids) < count:
                self.arrived.clear()
                await self.arrived.wait()


def test_the_redis_broker_selects_channels_redis_core_layer_tuned():
    config = channel_layer_config("redis://127.0.0.1:6390/2")
    assert config["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    tuned = config["CONFIG"]
    assert tuned["hosts"][0]["address"] == "redis://127.0.0.1:6390/2"
    assert "retry" not in tuned["hosts"][0]  # every lost connection must reach the bus
    assert tuned["capacity"] > 100  # channels_redis' default is one process's mailbox for all
    assert tuned["group_expiry"] < 86_400  # a dead process is written to for minutes, not a day
    assert tuned["prefix"] == REDIS_PREFIX
    layer = redis_layer("redis://127.0.0.1:6390/2")
    assert ChannelLayerBus(layer).renew_every == tuned["group_expiry"] / 2


async def test_messages_the_layer_drops_at_capacity_are_filled_from_the_store(redis_server):
    """A mailbox of 2: a burst of 40 loses most of them on the layer, none for the room."""
    layer = redis_layer(redis_server.url, capacity=2)
    store = MemoryStore()
    gaps: list[str] = []
    bus = ChannelLayerBus(layer, store=store, settle_after=0.3)
    broker = Broker(store, bus)
    room = fresh_room()
    received = Received()
    subscription = await bus.subscribe(room, received, gaps.append)
    try:
        await asyncio.gather(*(broker.publish_message(room, "ada", f"m{n}") for n in range(40)))
        await received.wait_for(40)
        await asyncio.sleep(0.5)  # nothing more arrives: no duplicates
        assert received.ids == list(range(1, 41))
        assert subscription.filled > 0  # the layer did drop some (capacity 2)...
        assert gaps == []  # ...and no member had to resume
        figures = {figure.name: figure.read() for figure in bus.figures()}  # at GET /metrics
        assert figures["course_ws_bus_caught_up"] == subscription.filled
        assert figures["course_ws_bus_lost"] == 0
    finally:
        await bus.aclose()
        await layer.close_pools()


async def test_ids_out_of_order_from_two_processes_are_delivered_in_order_once(redis_server):
    """Id 2 sent (by one process) before id 1 (by another): 1, 2 — and the late 1 dropped."""
    layer, other = redis_layer(redis_server.url), redis_layer(redis_server.url)
    store = MemoryStore()
    gaps: list[str] = []
    bus = ChannelLayerBus(layer, store=store)
    room = fresh_room()
    received = Received()
    subscription = await bus.subscribe(room, received, gaps.append)
    try:
        first = await store.append(room, "ada", "first")
        second = await store.append(room, "bob", "second")
        for message in (second, first):
            await other.group_send(
                group_for(room), {"type": EVENT_TYPE, "event": message.event, "id": message.id}
            )
        await received.wait_for(2)
        await wait_until(lambda: subscription.duplicates == 1, within=5, what="the late id 1")
        assert received.ids == [1, 2]
        assert gaps == []
    finally:
        await bus.aclose()
        await layer.close_pools()
        await other.close_pools()


async def test_a_gap_the_store_no_longer_has_is_reported_and_held_back(redis_server):
    layer = redis_layer(redis_server.url)
    store = MemoryStore(history_size=3)
    gaps: list[str] = []
    bus = ChannelLayerBus(layer, store=store)
    room = fresh_room()
    received = Received()
    subscription = await bus.subscribe(room, received, gaps.append)
    try:
        for n in range(10):  # stored, never sent: lost on the way, and trimmed since
            await store.append(room, "ada", f"lost {n}")
        await bus.publish(room, (await store.append(room, "ada", "after")).event, 11)
        await wait_until(lambda: bool(gaps), within=5, what="the gap reported")
        assert gaps == [LOST_ON_THE_BUS]  # the room's members resume
        assert subscription.gaps == 1
        assert 11 not in received.ids  # a client that saw it would resume after it
    finally:
        await bus.aclose()
        await layer.close_pools()


# -- two `course-ws serve channels` processes --------------------------------------------------


@contextlib.contextmanager
def serving(broker: str, database: Path, log: Path) -> Iterator[str]:
    """``course-ws serve channels --port 0 --broker B --database D``; yields ``ws://HOST:PORT``."""
    args = ("--broker", broker, "--database", str(database), *UNLIMITED)
    with course_ws_serve("channels", *args, log=log) as server:
        yield server.url


def stored_ids(database: Path, room: str) -> list[int]:
    """The ids of ``room``'s messages in the SQLite file, as the servers wrote them."""
    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute(
            "SELECT id FROM course_ws_chat_message WHERE room = ? ORDER BY id", (room,)
        )
        return [message_id for (message_id,) in rows]


def test_an_unreachable_redis_at_start_is_one_line_and_status_1_at_once(tmp_path):
    port = free_loopback_port()  # nothing listens there
    database = ["--database", str(tmp_path / "chat.sqlite3")]
    started = time.monotonic()
    done = subprocess.run(
        [
            COURSE_WS,
            "serve",
            "channels",
            "--port",
            "0",
            *database,
            "--broker",
            f"redis://127.0.0.1:{port}/0",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert time.monotonic() - started < 10
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(
        f"course-ws serve: error: cannot reach the broker at redis://127.0.0.1:{port}/0: "
    ), done.stderr
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


class Member:
    """A chat member that records every message id it gets, and resumes after a 1012."""

    def __init__(self, base: str, room: str, user: str) -> None:
        self.base, self.room, self.user = base, room, user
        self.ids: list[int] = []
        self.closes: list[int | None] = []
        self.client: ChatClient | None = None
        self.said = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Read until ``stop``; on a 1012, reconnect with ``?since=`` the last id seen."""
        while not stop.is_set():
            since = self.ids[-1] if self.ids else None
            client = await ChatClient.connect(self.base, self.room, user=self.user, since=since)
            self.client = client
            try:
                while not stop.is_set():
                    try:
                        event = await client.event(timeout=0.2)
                    except TimeoutError:
                        continue
                    if event["type"] == "message":
                        self.ids.append(event["id"])
            except ConnectionClosed:
                self.closes.append(client.websocket.close_code)
                assert client.websocket.close_code == 1012, self.closes
            finally:
                self.client = None
                await client.close()

    async def say(self, text: str) -> None:
        """Say ``text`` on the current connection (none while resuming: skipped)."""
        if self.client is not None:
            with contextlib.suppress(ConnectionClosed):
                await self.client.say(text)
                self.said += 1


async def talk(members: list[Member], seconds: float, every: float) -> None:
    """Every member says something every ``every`` seconds, for ``seconds``."""
    deadline = time.monotonic() + seconds
    n = 0
    while time.monotonic() < deadline:
        n += 1
        await asyncio.gather(*(member.say(f"{member.user} {n}") for member in members))
        await asyncio.sleep(every)


async def settle(members: list[Member], last_id: int, within: float) -> None:
    """Until every member got ``last_id`` (or a later one)."""
    await wait_until(
        lambda: all((member.ids or [0])[-1] >= last_id for member in members),
        within=within,
        what=f"every member got id {last_id}",
    )


async def connected(members: list[Member]) -> None:
    await wait_until(
        lambda: all(member.client is not None for member in members),
        within=10,
        what="every member joined",
    )


async def test_two_processes_share_rooms_through_redis_with_ids_from_one_database(
    redis_server, tmp_path
):
    database = tmp_path / "chat.sqlite3"
    room = fresh_room()
    with (
        serving(redis_server.url, database, tmp_path / "a.log") as first,
        serving(redis_server.url, database, tmp_path / "b.log") as second,
    ):
        members = [Member(base, room, user) for base, user in ((first, "ada"), (second, "bob"))]
        members += [Member(base, room, user) for base, user in ((first, "cy"), (second, "di"))]
        stop = asyncio.Event()
        readers = [asyncio.create_task(member.run(stop)) for member in members]
        await connected(members)
        await talk(members, seconds=2.0, every=0.12)  # both processes at once: ids interleave
        ids = stored_ids(database, room)
        await settle(members, ids[-1], within=10)
        stop.set()
        await asyncio.gather(*readers)

    said = sum(member.said for member in members)
    assert ids == list(range(1, said + 1))  # strictly increasing by one, across two processes
    for member in members:
        assert member.ids == ids, member.user  # each exactly once, in order
        assert member.closes == []  # out-of-order arrivals were filled, nobody resumed


async def test_a_redis_restart_mid_run_loses_nothing(redis_server, tmp_path):
    """Both processes keep talking while Redis is stopped for 1.5 s and started again."""
    database = tmp_path / "chat.sqlite3"
    room = fresh_room()
    with (
        serving(redis_server.url, database, tmp_path / "a.log") as first,
        serving(redis_server.url, database, tmp_path / "b.log") as second,
    ):
        members = [Member(first, room, "ada"), Member(second, room, "bob")]
        stop = asyncio.Event()
        readers = [asyncio.create_task(member.run(stop)) for member in members]
        await connected(members)
        talking = asyncio.create_task(talk(members, seconds=5.0, every=0.15))
        await asyncio.sleep(1.5)
        await asyncio.to_thread(redis_server.restart, down_for=1.5)
        await talking
        ids = stored_ids(database, room)
        await settle(members, ids[-1], within=15)
        stop.set()
        await asyncio.gather(*readers)
        logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()

    assert ids == list(range(1, len(ids) + 1))
    assert len(ids) > 40  # messages were said before, during and after the restart
    for member in members:
        assert member.ids == ids, member.user  # 0 lost, 0 twice, in order
    assert "the channel layer failed" in logs  # the restart was noticed...
    assert "the channel layer answers again" in logs  # ...and recovered from
