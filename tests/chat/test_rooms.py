"""LocalRooms: joins without gaps, leaves without leftovers, whatever the interleaving."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Collection

import pytest

from course_ws.chat.brokers import Broker, open_broker
from course_ws.chat.rooms import LocalRooms


class Member:
    """A fake connection: records what it was sent, directly or by fan-out."""

    def __init__(self, name: str, *, pause: asyncio.Event | None = None) -> None:
        self.name = name
        self.received: list[dict[str, object]] = []
        self.pause = pause

    async def send(self, event: str) -> None:
        if self.pause is not None:
            await self.pause.wait()
        self.received.append(json.loads(event))
        await asyncio.sleep(0)

    def ids(self) -> list[int]:
        return [int(e["id"]) for e in self.received if e["type"] == "message"]  # type: ignore[call-overload]

    def __hash__(self) -> int:
        return id(self)


class RecordingFanout:
    """Delivers at once to each fake member; records the closes asked for."""

    def __init__(self) -> None:
        self.closed: list[tuple[Member, int, str]] = []

    def __call__(self, members: Collection[Member], event: str) -> None:
        for member in members:
            member.received.append(json.loads(event))

    def close(self, members: Collection[Member], code: int, reason: str) -> None:
        self.closed.extend((member, code, reason) for member in members)


fanout = RecordingFanout()


@pytest.fixture
async def broker():
    opened = open_broker(history_size=100)
    yield opened
    await opened.aclose()


def empty(rooms: LocalRooms[Member], broker: Broker) -> None:
    assert rooms.rooms == {}
    assert rooms.members == 0
    assert broker.bus.subscriptions == 0


async def talk(broker: Broker, room: str, count: int) -> None:
    for number in range(count):
        await broker.publish_message(room, "talker", f"m{number}")
        await asyncio.sleep(0)


async def test_two_members_resuming_at_once_each_get_every_message_once(broker: Broker):
    """The join race: two joiners' buffers were equal lists; remove() took the wrong one."""
    rooms: LocalRooms[Member] = LocalRooms(broker, fanout)
    await talk(broker, "r", 10)
    first, second = Member("first"), Member("second")
    async with asyncio.TaskGroup() as group:
        group.create_task(rooms.join("r", first, "first", 0, first.send))
        group.create_task(rooms.join("r", second, "second", 0, second.send))
        group.create_task(talk(broker, "r", 20))
    assert first.ids() == list(range(1, 31))
    assert second.ids() == list(range(1, 31))
    for room in rooms.rooms.values():
        assert room.catching_up == set()
    await rooms.leave("r", first)
    await rooms.leave("r", second)
    empty(rooms, broker)


async def test_a_member_dropping_during_its_replay_leaves_no_room_behind(broker: Broker):
    """Orphan rooms: an aborted resume into an empty room kept the room and its subscription."""
    rooms: LocalRooms[Member] = LocalRooms(broker, fanout)
    await talk(broker, "r", 5)
    for _ in range(3):
        quitter = Member("quitter", pause=asyncio.Event())
        join = asyncio.create_task(rooms.join("r", quitter, "quitter", 0, quitter.send))
        await asyncio.sleep(0.01)
        join.cancel()  # the client went away while its welcome was being sent
        with pytest.raises(asyncio.CancelledError):
            await join
    empty(rooms, broker)


async def test_a_send_failing_during_the_welcome_leaves_no_room_behind(broker: Broker):
    rooms: LocalRooms[Member] = LocalRooms(broker, fanout)

    async def broken(event: str) -> None:
        raise ConnectionResetError("gone")

    with pytest.raises(ConnectionResetError):
        await rooms.join("r", Member("x"), "x", None, broken)
    empty(rooms, broker)


async def test_presence_is_announced_to_everyone_including_the_newcomer(broker: Broker):
    rooms: LocalRooms[Member] = LocalRooms(broker, fanout)
    ada, bob = Member("ada"), Member("bob")
    await rooms.join("r", ada, "ada", None, ada.send)
    await rooms.join("r", bob, "bob", None, bob.send)
    assert [e["type"] for e in ada.received] == ["welcome", "join", "join"]
    assert bob.received[0]["members"] == ["ada"]
    assert [e["type"] for e in bob.received] == ["welcome", "join"]
    await rooms.leave("r", bob)
    assert ada.received[-1] == {"type": "leave", "room": "r", "user": "bob"}
    await rooms.leave("r", ada)
    await rooms.leave("r", ada)  # twice is harmless
    empty(rooms, broker)


async def test_join_and_leave_do_not_slow_down_as_rooms_pile_up(broker: Broker):
    rooms: LocalRooms[Member] = LocalRooms(broker, fanout)

    async def cycle(count: int, prefix: str) -> float:
        start = time.perf_counter()
        for number in range(count):
            member = Member("m")
            await rooms.join(f"{prefix}{number}", member, "m", None, member.send)
            await broker.publish_message(f"{prefix}{number}", "m", "hi")
            await rooms.leave(f"{prefix}{number}", member)
        return (time.perf_counter() - start) / count

    few = await cycle(300, "few-")
    await cycle(9000, "pile-")  # 9,300 idle rooms kept for resuming clients
    many = await cycle(300, "many-")
    assert broker.store.rooms >= 9000
    assert many < few * 3, (few, many)  # a scan over every room made it 10 times slower
    empty(rooms, broker)


async def test_a_message_replayed_from_the_store_before_the_bus_brings_it_is_sent_once(
    broker: Broker,
):
    """Another process said it: the store has it at once, the bus brings it here later.

    A member resuming in between got it in its replay; the bus's copy must skip that
    member, and only that one (found across two workers on every stack, 1 in 2 runs).
    """
    rooms: LocalRooms[Member] = LocalRooms(broker, fanout)
    stayed = Member("stayed")
    await rooms.join("r", stayed, "stayed", None, stayed.send)
    said_elsewhere = await broker.store.append("r", "other", "in flight")  # not yet on the bus
    resumed = Member("resumed")
    await rooms.join("r", resumed, "resumed", 0, resumed.send)
    assert resumed.ids() == [said_elsewhere.id]
    await broker.bus.publish("r", said_elsewhere.event, said_elsewhere.id)  # the bus catches up
    await broker.publish_message("r", "talker", "after")
    assert resumed.ids() == [said_elsewhere.id, said_elsewhere.id + 1]
    assert stayed.ids() == [said_elsewhere.id, said_elsewhere.id + 1]
    await rooms.leave("r", stayed)
    await rooms.leave("r", resumed)
    empty(rooms, broker)


async def test_a_bus_that_lost_the_thread_has_every_member_resume_with_1012(broker: Broker):
    """The bus calls ``resume`` when the room's ids went back (a Redis that lost its data):
    ids the members hold now name other messages, so each is closed with 1012 to resume,
    hears nothing more meanwhile, and a join under way fails (1013: try again)."""
    closes = RecordingFanout()
    dropped: list[int] = []
    rooms: LocalRooms[Member] = LocalRooms(broker, closes, on_dropped=dropped.append)
    ada, bob = Member("ada"), Member("bob")
    await rooms.join("r", ada, "ada", None, ada.send)
    await rooms.join("r", bob, "bob", None, bob.send)
    await talk(broker, "r", 3)
    slow = Member("slow", pause=asyncio.Event())
    joining = asyncio.create_task(rooms.join("r", slow, "slow", 0, slow.send))
    await asyncio.sleep(0.01)  # its welcome is waiting: it is catching up
    local = rooms.rooms["r"]
    assert local.catching_up

    local.resume("the history was reset")
    assert sorted((m.name, code) for m, code, _ in closes.closed) == [("ada", 1012), ("bob", 1012)]
    assert dropped == [1012, 1012]
    before = (len(ada.received), len(bob.received))
    await broker.publish_message("r", "talker", "after the reset")
    assert (len(ada.received), len(bob.received)) == before  # they are leaving: nothing more
    local.resume("again")  # a second call closes nobody twice
    assert len(closes.closed) == 2

    assert slow.pause is not None
    slow.pause.set()
    with pytest.raises(OverflowError, match="the history was reset"):
        await joining
    await rooms.leave("r", ada)
    await rooms.leave("r", bob)
    assert local.resuming == set()
    empty(rooms, broker)
