"""The ``channels`` server's bus on Channels' in-memory layer: groups, renewal, and lost messages.

A channel layer is at most once: a channel over its capacity loses what is
sent to it, silently. These tests force that with a tiny capacity and prove
that the bus notices (the ids jump) instead of leaving members stale.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest
from channels.layers import InMemoryChannelLayer

from course_ws.chat.protocol import Message, presence
from course_ws.clients.probes import fresh_room
from course_ws.servers._channels.bus import (
    GROUP_PREFIX,
    LOST_ON_THE_BUS,
    ChannelLayerBus,
    group_for,
)


class Received:
    """What one subscription delivered."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int | None]] = []
        self.arrived = asyncio.Event()

    def __call__(self, event: str, message_id: int | None) -> None:
        self.events.append((event, message_id))
        self.arrived.set()

    async def wait_for(self, count: int, within: float = 5.0) -> None:
        async with asyncio.timeout(within):
            while len(self.events) < count:
                self.arrived.clear()
                await self.arrived.wait()


def message(room: str, message_id: int) -> Message:
    return Message(message_id, room, "ada", f"m{message_id}", 0.0)


def test_every_room_name_maps_to_a_valid_group_name():
    layer = InMemoryChannelLayer()
    for room in ("a", "Z" * 64, "with_under-score", "0123456789"):
        group = group_for(room)
        assert layer.require_valid_group_name(group)
        assert group.startswith(GROUP_PREFIX)
        assert len(group) < 100
    for not_a_room in ("", "x" * 65, "café", "a.b", "a b", "../x"):
        with pytest.raises(ValueError, match="not a room name"):
            group_for(not_a_room)


async def test_each_subscribed_process_gets_every_event_once_until_it_cancels():
    layer = InMemoryChannelLayer()
    one, two = ChannelLayerBus(layer), ChannelLayerBus(layer)  # two processes, one layer
    room = fresh_room()
    first, second = Received(), Received()
    subscription = await one.subscribe(room, first)
    await two.subscribe(room, second)
    assert (one.subscriptions, two.subscriptions) == (1, 1)
    said = message(room, 1)
    await one.publish(room, said.event, said.id)
    await two.publish(room, presence("join", room, "bob"), None)
    await first.wait_for(2)
    await second.wait_for(2)
    assert (
        first.events
        == second.events
        == [
            (said.event, 1),
            (presence("join", room, "bob"), None),
        ]
    )
    await subscription.cancel()
    await subscription.cancel()  # idempotent
    assert one.subscriptions == 0
    assert len(layer.groups[group_for(room)]) == 1  # only the other process is left
    await two.publish(room, message(room, 2).event, 2)
    await second.wait_for(3)
    assert len(first.events) == 2
    await two.aclose()
    assert two.subscriptions == 0
    assert group_for(room) not in layer.groups


async def test_lost_messages_are_noticed_and_reported_once_per_gap():
    """A channel of capacity 1: publishing 20 messages at once loses most of them."""
    layer = InMemoryChannelLayer(capacity=1)
    gaps: list[str] = []
    bus = ChannelLayerBus(layer)
    room = fresh_room()
    received = Received()
    subscription = await bus.subscribe(room, received, gaps.append)
    await asyncio.gather(*(bus.publish(room, message(room, n).event, n) for n in range(1, 21)))
    await bus.publish(room, message(room, 21).event, 21)  # arrives: the channel is free again
    await asyncio.sleep(0.2)
    ids = [message_id for _, message_id in received.events]
    assert subscription.last_id == 21  # the last one arrived...
    assert gaps
    assert gaps == [LOST_ON_THE_BUS] * subscription.gaps  # the room's members resume
    assert ids == sorted(ids)
    assert ids[0] == 1
    # Each delivered message follows the one before it: the one after a gap is held back.
    assert all(b == a + 1 for a, b in itertools.pairwise(ids))
    await bus.aclose()


async def test_messages_in_order_are_no_gap():
    layer = InMemoryChannelLayer()
    gaps: list[str] = []
    bus = ChannelLayerBus(layer)
    room = fresh_room()
    received = Received()
    await bus.subscribe(room, received, gaps.append)
    for n in range(1, 51):
        await bus.publish(room, message(room, n).event, n)
        if n % 10 == 0:
            await bus.publish(room, presence("leave", room, "ada"), None)
    await received.wait_for(55)
    assert gaps == []
    await bus.aclose()


@pytest.mark.parametrize(("renew_every", "delivered"), [(0.3, True), (60.0, False)])
async def test_group_membership_is_renewed_before_it_expires(renew_every, delivered):
    """With a 1 s group expiry, only a renewed membership still gets events 2.5 s later."""
    layer = InMemoryChannelLayer(group_expiry=1)
    bus = ChannelLayerBus(layer, renew_every=renew_every)
    room = fresh_room()
    received = Received()
    await bus.subscribe(room, received)
    await asyncio.sleep(2.5)
    await bus.publish(room, message(room, 1).event, 1)
    if delivered:
        await received.wait_for(1)
    else:
        with pytest.raises(TimeoutError):
            await received.wait_for(1, within=0.5)
    await bus.aclose()


def test_the_renewal_defaults_to_half_the_layers_group_expiry():
    assert ChannelLayerBus(InMemoryChannelLayer(group_expiry=600)).renew_every == 300
