"""Checks for exercise ``chat_consumer`` (exercises/05_channels/chat_consumer.py).

The learner's Channels ``app`` is served by the course's uvicorn host on a free
127.0.0.1 port (:func:`course_ws.serve_in_background`: a fresh app and chat for
each check, its lifespan migrating the database), and members join with
:class:`course_ws.clients.chat.ChatClient` over real sockets: the welcome, the
fan-out, the leave of a member that vanished, refusals with their real HTTP
status, 1003 for a binary frame, an error event that leaves the connection open,
and ``?since=`` replayed from the database by a *second* app after the first
stopped. Then the consumer runs under Channels' own test tool,
``WebsocketCommunicator``, on this test's event loop: every receive has a
timeout, ``receive_nothing`` proves what must not arrive, and ``disconnect``
must leave nothing behind in the room or on the bus.

Django's settings belong to the process: every app of this run uses the same
database, ``ServeOptions().database`` (in the test run's own ``XDG_DATA_HOME``),
so each check uses rooms of its own. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from chat_expect import QUIET, TIMEOUT, Event, expect, expect_kind
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws import BackgroundServer, serve_in_background
from course_ws.clients.chat import ChatClient, chat_url
from course_ws.clients.probes import fresh_room
from course_ws.options import ServeOptions

Join = Callable[..., Awaitable[ChatClient]]


def serve(load: Callable[[str], Any]) -> BackgroundServer:
    """The learner's app, loaded afresh (a chat of its own), on a free port."""
    return serve_in_background(load("chat_consumer").app, log_level="info")


@pytest.fixture
def server(load: Callable[[str], Any]) -> Iterator[BackgroundServer]:
    with serve(load) as running:
        yield running


def refused(status: int) -> str:
    """Why a handshake the check expected to succeed may have failed."""
    if status == 500:
        return "HTTP 500: the consumer raised before accepting (see the server's log)"
    if status == 403:
        return "HTTP 403: the consumer closed (or ended) before accepting"
    return f"HTTP {status}"


async def join(server: BackgroundServer, room: str, user: str, since: int | None = None):
    """A member of ``room`` on ``server`` that has read its welcome; a clear failure if not."""
    where = chat_url("", room, user=user, since=since)
    try:
        return await ChatClient.connect(
            server.url, room, user=user, since=since, timeout=TIMEOUT, open_timeout=TIMEOUT
        )
    except InvalidStatus as refusal:
        pytest.fail(f"connecting to {where}: refused with {refused(refusal.response.status_code)}")
    except TimeoutError:
        pytest.fail(
            f"connecting to {where}: no welcome event within {TIMEOUT:g} s "
            "(does websocket_connect accept, then join with service.member?)"
        )
    except ConnectionClosed as closed:
        pytest.fail(f"connecting to {where}: closed ({closed}) before any welcome event")
    except (ValueError, TypeError) as wrong:
        pytest.fail(f"connecting to {where}: {wrong}")


@pytest.fixture
async def members(server: BackgroundServer) -> AsyncIterator[Join]:
    """``await join(room, user, since=None)``: a member that has read its welcome."""
    joined: list[ChatClient] = []

    async def member(room: str, user: str, since: int | None = None) -> ChatClient:
        client = await join(server, room, user, since)
        joined.append(client)
        return client

    yield member
    for client in joined:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(TIMEOUT):
                await client.close()


async def test_welcome(members):
    """The welcome comes first: room, user, last_id and who was already there"""
    room = fresh_room()
    ada = await members(room, "ada")
    expected = {"type": "welcome", "room": room, "user": "ada", "last_id": 0, "members": []}
    assert ada.welcome == expected, (
        f"ada joined an empty room: expected {expected}, got {ada.welcome}"
    )
    bob = await members(room, "bob")
    expected = expected | {"user": "bob", "members": ["ada"]}
    assert bob.welcome == expected, f"bob joined after ada: expected {expected}, got {bob.welcome}"


async def test_messages_reach_every_member(members):
    """A say reaches both members of the room, with ids 1, 2…; joins are heard"""
    room = fresh_room()
    ada = await members(room, "ada")
    await expect_kind(ada, "join", "ada joined")
    bob = await members(room, "bob")
    for who in (bob, ada):
        got = await expect(who, "bob joined")
        joined = {"type": "join", "room": room, "user": "bob"}
        assert got == joined, f"bob joined: expected {who.user} to hear {joined}, got {got}"
    for number, (speaker, text) in enumerate([(ada, "hello"), (bob, "hi ada")], 1):
        await speaker.say(text)
        said = f"{speaker.user} said {text!r}"
        expected = {"type": "message", "id": number, "room": room, "user": speaker.user}
        expected |= {"text": text}
        for who in (ada, bob):
            got = await expect(who, said)
            shown = {key: value for key, value in got.items() if key != "ts"}
            assert shown == expected, (
                f"{said}: expected {who.user} to receive {expected} (and a ts), got {got}"
            )


async def test_a_member_that_vanishes_leaves(members):
    """A member that vanishes without a close frame leaves (websocket_disconnect): others hear it"""
    room = fresh_room()
    ada = await members(room, "ada")
    await expect_kind(ada, "join", "ada joined")
    bob = await members(room, "bob")
    await expect_kind(ada, "join", "bob joined")
    bob.websocket.transport.abort()
    leave = {"type": "leave", "room": room, "user": "bob"}
    got = await expect(ada, "bob vanished")
    assert got == leave, f"bob vanished: expected ada to hear {leave}, got {got}"


async def test_since_replays_from_the_database_after_a_restart(load):
    """?since=N replays what a stopped server stored: a new app reads it from the database"""
    room = fresh_room()
    with serve(load) as first:
        async with await join(first, room, "ada") as ada:
            await expect_kind(ada, "join", "ada joined")
            for text in ["one", "two", "three"]:
                await ada.say(text)
                await expect_kind(ada, "message", f"ada said {text!r}")
    with serve(load) as second:  # a new app, a new chat: only the database remembers
        async with await join(second, room, "bob", since=1) as bob:
            after = "bob joined a restarted server with ?since=1"
            assert bob.welcome.get("last_id") == 3, (
                f"{after}: expected last_id 3 in the welcome, got {bob.welcome}"
            )
            for number, text in [(2, "two"), (3, "three")]:
                got = await expect(bob, after)
                shown = (got.get("type"), got.get("id"), got.get("text"))
                assert shown == ("message", number, text), (
                    f"{after}: expected message {number} {text!r} replayed, got {got}"
                )
            await expect_kind(bob, "join", f"{after}, after the replay")


async def test_refusals_have_their_http_status(server):
    """A bad room is refused with 404, a bad ?user= or ?since= with 400, before accepting"""
    for path, status in [
        ("/chat/no.dots.here", 404),
        ("/chat/" + "r" * 65, 404),
        ("/chat/lobby?user=ada%20lovelace", 400),
        ("/chat/lobby?since=yesterday", 400),
    ]:
        try:
            async with connect(server.url + path, open_timeout=TIMEOUT):
                pass
        except InvalidStatus as refusal:
            got = refusal.response.status_code
            hint = " (refuse(...) sends it; a close before accept is a 403)" if got == 403 else ""
            assert got == status, f"{path}: expected a refusal with HTTP {status}, got {got}{hint}"
            continue
        except TimeoutError:
            pytest.fail(f"{path}: no answer to the handshake within {TIMEOUT:g} s")
        pytest.fail(f"{path}: expected a refusal with HTTP {status}, the handshake was accepted")


async def test_a_binary_frame_closes_with_1003(members):
    """A binary frame closes the connection with 1003 (the chat speaks JSON text)"""
    ada = await members(fresh_room(), "ada")
    await expect_kind(ada, "join", "ada joined")
    await ada.websocket.send(b"\x00\x01")
    try:
        async with asyncio.timeout(TIMEOUT):
            async for _ in ada.websocket:
                pass
    except TimeoutError:
        pytest.fail(f"sent bytes: the connection was still open {TIMEOUT:g} s later")
    except ConnectionClosed:
        pass
    closed = ada.websocket.close_code
    assert closed == 1003, f"sent bytes: expected close code 1003, got {closed}"


async def test_bad_json_gets_an_error_and_the_connection_stays_open(members):
    """A frame that is not JSON gets an error event, and the connection stays open"""
    ada = await members(fresh_room(), "ada")
    await expect_kind(ada, "join", "ada joined")
    await ada.websocket.send("not json")
    got = await expect(ada, "sent 'not json'")
    assert (got.get("type"), got.get("code")) == ("error", "bad_json"), (
        f"sent 'not json': expected an error event with code 'bad_json', got {got}"
    )
    await ada.say("still here")
    got = await expect(ada, "after the bad frame, ada said 'still here'")
    assert (got.get("type"), got.get("text")) == ("message", "still here"), (
        f"after the bad frame, ada said 'still here': expected that message, got {got}"
    )


# -- under Channels' WebsocketCommunicator: no server, the consumer on this test's loop ----------


@pytest.fixture
async def chat(load: Callable[[str], Any]) -> AsyncIterator[Any]:
    """The learner's module and a started chat of its own (no server: no lifespan to start it)."""
    module = load("chat_consumer")  # configures Django first
    from course_ws.servers._channels.chat import ChannelsChat

    started = ChannelsChat(ServeOptions())
    await started.start()
    try:
        yield module, started
    finally:
        await started.aclose()


@contextlib.asynccontextmanager
async def communicator(app: Any, target: str) -> AsyncIterator[Any]:
    """A ``WebsocketCommunicator`` on ``app``, always disconnected at the end."""
    from channels.testing import WebsocketCommunicator

    talk = WebsocketCommunicator(app, target)
    try:
        yield talk
    finally:
        if not talk.future.done():  # a consumer that raised, or was cancelled, is over
            with contextlib.suppress(Exception):
                await talk.disconnect(timeout=TIMEOUT)


async def received(talk: Any, after: str) -> Event:
    """The next JSON event from the consumer, within ``TIMEOUT``."""
    try:
        event: Event = await talk.receive_json_from(timeout=TIMEOUT)
    except TimeoutError:
        pytest.fail(f"{after}: the consumer sent nothing within {TIMEOUT:g} s")
    except AssertionError as wrong:  # a close (or no text) where a frame was expected
        pytest.fail(f"{after}: expected a JSON text frame, got {wrong}")
    return event


async def test_under_websocket_communicator_disconnect_leaves_nothing_behind(chat):
    """Under WebsocketCommunicator: welcome, a say, then nothing; disconnect leaves the room"""
    module, started = chat
    room = fresh_room()
    async with communicator(module.application(started), f"/chat/{room}?user=ada") as ada:
        try:
            connected, _ = await ada.connect(timeout=TIMEOUT)
        except TimeoutError:
            pytest.fail(f"connecting: neither accepted nor refused within {TIMEOUT:g} s")
        assert connected, "connecting to an empty room: expected the consumer to accept"
        welcome = await received(ada, "connected")
        assert (welcome.get("type"), welcome.get("members")) == ("welcome", []), (
            f"connected to an empty room: expected a welcome with no members, got {welcome}"
        )
        await received(ada, "after the welcome (ada's own join)")
        await ada.send_json_to({"type": "say", "text": "hello"})
        said = await received(ada, "ada said 'hello'")
        assert (said.get("type"), said.get("text")) == ("message", "hello"), (
            f"ada said 'hello': expected that message back, got {said}"
        )
        assert await ada.receive_nothing(timeout=QUIET), (
            "ada said 'hello': expected the message once, then nothing"
        )
        await ada.disconnect(timeout=TIMEOUT)
    assert started.service.rooms.members == 0, (
        "after disconnect: ada is still a member of the room (leave in websocket_disconnect)"
    )
    assert started.bus.subscriptions == 0, (
        "after disconnect: the room is still subscribed on the channel layer (it was not left)"
    )


async def test_under_websocket_communicator_a_refusal_is_a_close_before_accept(chat):
    """Under WebsocketCommunicator a refusal is a close before accept (it has no HTTP response)"""
    module, started = chat
    async with communicator(module.application(started), "/chat/no.dots.here") as refused_:
        try:
            connected, code = await refused_.connect(timeout=TIMEOUT)
        except TimeoutError:
            pytest.fail(f"/chat/no.dots.here: neither accepted nor refused within {TIMEOUT:g} s")
        assert not connected, "/chat/no.dots.here: expected a refusal, the consumer accepted"
        assert code == 1008, (
            f"/chat/no.dots.here: refuse(...) without the HTTP response extension closes "
            f"with 1008, got {code}"
        )
