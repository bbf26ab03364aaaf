"""``course_ws.lab.channels_consumers``: each consumer type under ``WebsocketCommunicator``,
then the app over a real socket.

Every ``receive_*`` has a timeout, every communicator is disconnected (in a
``finally``: a forgotten one leaves its consumer running and its channel in
its groups), and ``receive_nothing`` proves what must *not* arrive.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws.hosting.background import serve_in_background
from course_ws.options import ServeOptions
from course_ws.servers._channels import settings as channels_settings

DELAY = 0.25  # s, a slow handler's work
TIMEOUT = 3  # s, for anything that should arrive


@pytest.fixture(scope="module", autouse=True)
def django_configured() -> None:
    """Django's settings are global to the process: every test uses the default database
    (``ServeOptions().database``, in the test run's own XDG_DATA_HOME), as the servers do."""
    channels_settings.configure(ServeOptions().database)


@asynccontextmanager
async def communicator(app: Any, path: str) -> AsyncIterator[Any]:
    """A connected ``WebsocketCommunicator``, always disconnected at the end."""
    from channels.testing import WebsocketCommunicator

    talk = WebsocketCommunicator(app, path)
    try:
        yield talk
    finally:
        if not talk.future.done():  # a consumer that raised, or was cancelled, is over
            await talk.disconnect(timeout=TIMEOUT)


async def replies(talk: Any, count: int) -> list[tuple[float, dict[str, Any]]]:
    started = time.monotonic()
    found = []
    for _ in range(count):
        reply = json.loads(await talk.receive_from(timeout=TIMEOUT))
        found.append((time.monotonic() - started, reply))
    return found


async def test_sync_consumers_share_one_thread_and_wait_for_each_other() -> None:
    from course_ws.lab.channels_consumers import SlowSyncEcho

    app = SlowSyncEcho.as_asgi(delay=DELAY)
    async with communicator(app, "/") as one, communicator(app, "/") as two:
        assert (await one.connect(timeout=TIMEOUT))[0]
        assert (await two.connect(timeout=TIMEOUT))[0]
        started = time.monotonic()
        await one.send_to(text_data="a")
        await two.send_to(text_data="b")
        first, second = await asyncio.gather(replies(one, 1), replies(two, 1))
        took = time.monotonic() - started
    assert first[0][1]["thread"] == second[0][1]["thread"]  # one thread for the process
    assert took >= 2 * DELAY * 0.95  # the second connection waited for the first


async def test_a_thread_per_connection_runs_them_side_by_side() -> None:
    from course_ws.lab.channels_consumers import SlowSyncEcho, ThreadPerConnection

    app = ThreadPerConnection(SlowSyncEcho.as_asgi(delay=DELAY))
    async with communicator(app, "/") as one, communicator(app, "/") as two:
        assert (await one.connect(timeout=TIMEOUT))[0]
        assert (await two.connect(timeout=TIMEOUT))[0]
        started = time.monotonic()
        await one.send_to(text_data="a")
        await two.send_to(text_data="b")
        first, second = await asyncio.gather(replies(one, 1), replies(two, 1))
        took = time.monotonic() - started
    assert first[0][1]["thread"] != second[0][1]["thread"]
    assert took < 2 * DELAY  # side by side, not one after the other


async def test_an_async_consumer_takes_one_event_at_a_time_per_connection() -> None:
    from course_ws.lab.channels_consumers import SlowAsyncEcho

    app = SlowAsyncEcho.as_asgi(delay=DELAY)
    async with communicator(app, "/") as one, communicator(app, "/") as two:
        assert (await one.connect(timeout=TIMEOUT))[0]
        assert (await two.connect(timeout=TIMEOUT))[0]
        await one.send_to(text_data="a1")
        await one.send_to(text_data="a2")
        await two.send_to(text_data="b1")
        assert await one.receive_nothing(timeout=DELAY / 2)  # still working on a1
        mine, theirs = await asyncio.gather(replies(one, 2), replies(two, 1))
    assert [reply["text"] for _, reply in mine] == ["a1", "a2"]
    assert mine[1][0] - mine[0][0] >= DELAY * 0.95  # a2 waited for a1 ...
    assert theirs[0][0] < mine[1][0]  # ... but b1 did not


async def test_json_consumer_round_trip_and_a_binary_frame() -> None:
    from course_ws.lab.channels_consumers import JsonEcho

    async with communicator(JsonEcho.as_asgi(), "/") as talk:
        assert await talk.connect(timeout=TIMEOUT) == (True, None)
        await talk.send_json_to({"n": 1})
        assert await talk.receive_json_from(timeout=TIMEOUT) == {"echo": {"n": 1}}
        await talk.send_to(bytes_data=b"\x00")
        with pytest.raises(ValueError, match="No text section"):
            await talk.wait(timeout=TIMEOUT)  # raises as soon as the consumer does


async def test_a_receive_that_times_out_cancels_the_consumer() -> None:
    from course_ws.lab.channels_consumers import JsonEcho

    async with communicator(JsonEcho.as_asgi(), "/") as talk:
        await talk.connect(timeout=TIMEOUT)
        with pytest.raises(TimeoutError):
            await talk.receive_from(timeout=0.1)
        assert talk.future.cancelled()  # the app is gone: this communicator is done


async def test_guarded_denies_closes_and_greets() -> None:
    from course_ws.lab.channels_consumers import MAX_NAME, Guarded

    app = Guarded.as_asgi()
    async with communicator(app, "/guarded") as nameless:
        assert await nameless.connect(timeout=TIMEOUT) == (False, 1000)
    async with communicator(app, "/guarded?name=" + "x" * (MAX_NAME + 1)) as long_name:
        assert await long_name.connect(timeout=TIMEOUT) == (True, None)
        closed = await long_name.receive_output(timeout=TIMEOUT)
        assert (closed["type"], closed["code"]) == ("websocket.close", 1008)
        assert str(MAX_NAME) in closed["reason"]
    async with communicator(app, "/guarded?name=alice") as alice:
        assert (await alice.connect(timeout=TIMEOUT))[0]
        assert await alice.receive_from(timeout=TIMEOUT) == "hello alice"


def room_app() -> Any:
    from channels.routing import URLRouter
    from django.urls import re_path

    from course_ws.lab.channels_consumers import ROOM, RoomMember

    return URLRouter([re_path(rf"^rooms/{ROOM}$", RoomMember.as_asgi())])


async def test_room_members_hear_each_other_and_only_their_room() -> None:
    from channels.layers import get_channel_layer

    from course_ws.lab.channels_consumers import chat_event, group_for

    app = room_app()
    async with (
        communicator(app, "/rooms/t-lobby") as alice,
        communicator(app, "/rooms/t-lobby") as bob,
        communicator(app, "/rooms/t-attic") as carol,
    ):
        for member in (alice, bob, carol):
            assert (await member.connect(timeout=TIMEOUT))[0]
        await alice.send_json_to({"text": "hi"})
        for member in (alice, bob):
            event = await member.receive_json_from(timeout=TIMEOUT)
            assert (event["type"], event["room"], event["text"]) == ("message", "t-lobby", "hi")
        assert await carol.receive_nothing(timeout=0.1)
        await get_channel_layer().group_send(group_for("t-attic"), chat_event("from outside"))
        assert (await carol.receive_json_from(timeout=TIMEOUT))["text"] == "from outside"
        assert await alice.receive_nothing(timeout=0.1)
    assert group_for("t-lobby") not in get_channel_layer().groups  # both left on disconnect


async def test_an_event_without_its_handler_is_a_value_error() -> None:
    from channels.layers import get_channel_layer

    from course_ws.lab.channels_consumers import group_for

    async with communicator(room_app(), "/rooms/t-typo") as member:
        assert (await member.connect(timeout=TIMEOUT))[0]
        await get_channel_layer().group_send(group_for("t-typo"), {"type": "chat.mesage"})
        with pytest.raises(ValueError, match=r"No handler for message type chat\.mesage"):
            await member.wait(timeout=TIMEOUT)


async def test_forgetting_disconnect_leaves_the_consumer_in_its_group() -> None:
    from channels.layers import get_channel_layer
    from channels.testing import WebsocketCommunicator

    from course_ws.lab.channels_consumers import group_for

    forgotten = WebsocketCommunicator(room_app(), "/rooms/t-forgotten")
    assert (await forgotten.connect(timeout=TIMEOUT))[0]
    group = group_for("t-forgotten")
    assert len(get_channel_layer().groups[group]) == 1
    assert not forgotten.future.done()  # still running, after the "test" is over
    await forgotten.disconnect(timeout=TIMEOUT)  # what the test should have done
    assert forgotten.future.done()
    assert group not in get_channel_layer().groups


@pytest.mark.parametrize(
    ("name", "valid"),
    [("room.lobby", True), ("x" * 99, True), ("x" * 100, False), ("salle-café", False)],
)
async def test_group_names_are_short_ascii(name: str, valid: bool) -> None:
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = await layer.new_channel()
    if valid:
        await layer.group_add(name, channel)
        await layer.group_discard(name, channel)
    else:
        with pytest.raises(TypeError, match="ASCII alphanumerics"):
            await layer.group_add(name, channel)


def post(url: str, text: str) -> dict[str, Any]:
    request = urllib.request.Request(url, data=text.encode(), method="POST")
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        assert response.status == 202
        answer: dict[str, Any] = json.loads(response.read())
        return answer


async def test_the_app_over_a_real_socket() -> None:
    from course_ws.lab.channels_consumers import MAX_NAME, application

    with serve_in_background(application()) as server:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(server.url + "/guarded", open_timeout=TIMEOUT):
                pass
        assert refused.value.response.status_code == 403  # DenyConnection under uvicorn
        async with connect(server.url + "/guarded?name=" + "x" * (MAX_NAME + 1)) as long_name:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(long_name.recv(), TIMEOUT)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
            1008,
            f"names are at most {MAX_NAME} characters",
        )
        member = await connect(server.url + "/rooms/lobby", open_timeout=TIMEOUT)
        try:
            url = server.http_url + "/rooms/lobby/announce"
            answer = await asyncio.to_thread(post, url, "from a view")
            assert answer["room"] == "lobby"
            event = json.loads(await asyncio.wait_for(member.recv(), TIMEOUT))
            assert (event["type"], event["text"]) == ("message", "from a view")
            await asyncio.to_thread(server.stop)  # the host closes every WebSocket first
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(member.recv(), TIMEOUT)
            assert member.close_code == 1001
        finally:
            await member.close()
