"""Checks for exercise ``typing_indicator`` (exercises/05_channels/typing_indicator.py).

The learner's Channels ``app`` is served by the course's uvicorn host on a free
127.0.0.1 port (:func:`course_ws.serve_in_background`: a fresh app and chat for
each check), and members join with :class:`course_ws.clients.chat.ChatClient`
over real sockets. What a typing indicator must do: reach the room's other
members (not the sender, not another room), at most once per
``TYPING_INTERVAL`` for each member, and leave no trace — no id taken, no row in
the database (read here through the ORM, in a thread), nothing replayed by
``?since=``. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from chat_expect import TIMEOUT, expect, expect_kind, expect_silence
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws import BackgroundServer, serve_in_background
from course_ws.clients.chat import ChatClient, chat_url
from course_ws.clients.probes import fresh_room

TYPING = json.dumps({"type": "typing"})

Join = Callable[..., Awaitable[ChatClient]]


@pytest.fixture
def module(load: Callable[[str], Any]) -> Any:
    """The learner's module, loaded afresh (a chat of its own)."""
    return load("typing_indicator")


@pytest.fixture
def server(module: Any) -> Iterator[BackgroundServer]:
    with serve_in_background(module.app, log_level="info") as running:
        yield running


@pytest.fixture
async def members(server: BackgroundServer) -> AsyncIterator[Join]:
    """``await join(room, user, since=None)``: a member that has read its welcome."""
    joined: list[ChatClient] = []

    async def join(room: str, user: str, since: int | None = None) -> ChatClient:
        where = chat_url("", room, user=user, since=since)
        try:
            client = await ChatClient.connect(
                server.url, room, user=user, since=since, timeout=TIMEOUT, open_timeout=TIMEOUT
            )
        except InvalidStatus as refusal:
            pytest.fail(f"connecting to {where}: refused with HTTP {refusal.response.status_code}")
        except (TimeoutError, ConnectionClosed, ValueError) as failed:
            pytest.fail(f"connecting to {where}: no welcome ({failed!r})")
        joined.append(client)
        return client

    yield join
    for client in joined:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(TIMEOUT):
                await client.close()


async def pair(members: Join, room: str) -> tuple[ChatClient, ChatClient]:
    """ada and bob in ``room``, every join event read."""
    ada = await members(room, "ada")
    await expect_kind(ada, "join", "ada joined")
    bob = await members(room, "bob")
    await expect_kind(ada, "join", "bob joined")
    await expect_kind(bob, "join", "bob joined")
    return ada, bob


async def test_the_others_see_it_the_sender_does_not(members):
    """ada's typing reaches bob as {"type": "typing", "room", "user": "ada"}; ada gets nothing"""
    room = fresh_room()
    ada, bob = await pair(members, room)
    await ada.websocket.send(TYPING)
    got = await expect(bob, "ada sent a typing frame")
    expected = {"type": "typing", "room": room, "user": "ada"}
    assert got == expected, f"ada sent a typing frame: expected bob to get {expected}, got {got}"
    await expect_silence(ada, "ada sent a typing frame", "the sender knows it is typing")


async def test_only_the_room_sees_it(members):
    """A member of another room hears nothing of ada's typing"""
    room = fresh_room()
    ada, bob = await pair(members, room)
    carol = await members(fresh_room(), "carol")
    await expect_kind(carol, "join", "carol joined another room")
    await ada.websocket.send(TYPING)
    await expect_kind(bob, "typing", "ada sent a typing frame")
    await expect_silence(carol, "ada sent a typing frame", "carol is in another room")


async def test_it_is_never_stored_nor_replayed(members, module):
    """A typing takes no id, writes no row, and ?since=0 does not replay it"""
    room = fresh_room()
    ada, bob = await pair(members, room)
    await ada.websocket.send(TYPING)
    await expect_kind(bob, "typing", "ada sent a typing frame")
    await ada.say("hi")
    said = await expect_kind(bob, "message", "after typing, ada said 'hi'")
    assert said.get("id") == 1, (
        f"after a typing frame, ada's first message: expected id 1 (a typing takes no id), "
        f"got {said}"
    )
    rows = await stored(room)
    assert rows == [(1, "ada", "hi")], (
        f"the database's rows for the room: expected only ada's message, got {rows}"
    )
    carol = await members(room, "carol", since=0)
    after = "carol joined with ?since=0"
    replayed = await expect(carol, after)
    shown = (replayed.get("type"), replayed.get("id"), replayed.get("text"))
    assert shown == ("message", 1, "hi"), f"{after}: expected message 1 'hi', got {replayed}"
    await expect_kind(carol, "join", f"{after}, after the replay (and no typing)")


async def stored(room: str) -> list[tuple[int, str, str]]:
    """The rows of ``room`` in the database, read with the ORM in a thread."""
    from channels.db import database_sync_to_async

    from course_ws.servers._channels.models import ChatMessage

    def rows() -> list[tuple[int, str, str]]:
        found = ChatMessage.objects.filter(room=room).order_by("id")
        return [tuple(row) for row in found.values_list("id", "user", "text")]

    result: list[tuple[int, str, str]] = await database_sync_to_async(rows)()
    return result


async def test_it_is_bounded_once_per_interval(members, module):
    """Five typing frames at once reach bob once; another after TYPING_INTERVAL reaches him too"""
    interval = float(module.TYPING_INTERVAL)
    assert 0 < interval <= 3, f"TYPING_INTERVAL: expected a few seconds at most, got {interval}"
    room = fresh_room()
    ada, bob = await pair(members, room)
    started = asyncio.get_running_loop().time()
    for _ in range(5):
        await ada.websocket.send(TYPING)
    await expect_kind(bob, "typing", "ada sent 5 typing frames at once")
    await expect_silence(bob, "ada sent 5 typing frames at once", "one per interval")
    elapsed = asyncio.get_running_loop().time() - started
    await asyncio.sleep(max(0.0, interval - elapsed) + 0.05)
    await ada.websocket.send(TYPING)
    await expect_kind(bob, "typing", f"ada typed again, {interval:g} s later")
    await ada.say("still chatting")
    got = await expect_kind(bob, "message", "ada said 'still chatting'")
    assert got.get("text") == "still chatting", f"ada said 'still chatting': got {got}"


async def test_leaving_members_leave_the_group(members, module):
    """Members that leave the room leave its typing group too (a group keeps dead channels a day)"""
    from channels.layers import get_channel_layer

    room = fresh_room()
    ada, bob = await pair(members, room)
    layer, group = get_channel_layer(), module.typing_group(room)
    try:  # bob's join event can reach the room just before his group_add is done
        async with asyncio.timeout(TIMEOUT):
            while len(layer.groups.get(group, {})) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        in_group = len(layer.groups.get(group, {}))
        pytest.fail(f"ada and bob in the room: expected 2 channels in {group}, got {in_group}")
    for client in (ada, bob):
        await client.close()
    try:
        async with asyncio.timeout(TIMEOUT):
            while layer.groups.get(group):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    except TimeoutError:
        left = len(layer.groups.get(group, {}))
        pytest.fail(
            f"ada and bob left: {left} channels still in {group} {TIMEOUT:g} s later "
            "(group_discard in leave)"
        )
