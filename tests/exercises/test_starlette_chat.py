"""Checks for exercise ``starlette_chat`` (exercises/04_asgi/starlette_chat.py).

The learner's Starlette ``app`` is served by the course's uvicorn host on a free
127.0.0.1 port (:func:`course_ws.serve_in_background`, a fresh app and chat
service for each check), and members join with
:class:`course_ws.clients.chat.ChatClient` over real sockets: what the
conformance suite (``tests/conformance``) asks of every chat server, in the
parts this adapter decides — the welcome, the fan-out, the replay, refusals with
their real HTTP status, 1003 for a binary frame, an error event that leaves the
connection open, and the leave of a member that vanished. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest
from chat_expect import TIMEOUT, expect, expect_kind
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws import BackgroundServer, serve_in_background
from course_ws.clients.chat import ChatClient, chat_url

Join = Callable[..., Awaitable[ChatClient]]


@pytest.fixture
def server(load: Callable[[str], Any]) -> Iterator[BackgroundServer]:
    """The learner's app, loaded afresh (a chat of its own), on a free port."""
    with serve_in_background(load("starlette_chat").app, log_level="info") as running:
        yield running


def refused(status: int) -> str:
    """Why a handshake the check expected to succeed may have failed."""
    if status == 500:
        return "HTTP 500: the endpoint returned (or raised) without accepting or refusing"
    if status == 403:
        return "HTTP 403: the endpoint closed before accepting"
    return f"HTTP {status}"


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
            pytest.fail(
                f"connecting to {where}: refused with {refused(refusal.response.status_code)}"
            )
        except TimeoutError:
            pytest.fail(f"connecting to {where}: no welcome event within {TIMEOUT:g} s")
        except ConnectionClosed as closed:
            pytest.fail(f"connecting to {where}: closed ({closed}) before any welcome event")
        except (ValueError, TypeError) as wrong:
            pytest.fail(f"connecting to {where}: {wrong}")
        joined.append(client)
        return client

    yield join
    for client in joined:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(TIMEOUT):
                await client.close()


async def test_welcome(members):
    """The welcome comes first: room, user, last_id and who was already there"""
    ada = await members("lobby", "ada")
    expected = {"type": "welcome", "room": "lobby", "user": "ada", "last_id": 0, "members": []}
    assert ada.welcome == expected, (
        f"ada joined an empty room: expected {expected}, got {ada.welcome}"
    )
    bob = await members("lobby", "bob")
    expected = expected | {"user": "bob", "members": ["ada"]}
    assert bob.welcome == expected, f"bob joined after ada: expected {expected}, got {bob.welcome}"


async def test_messages_reach_every_member(members):
    """A say reaches both members of the room, with ids 1, 2…; joins are heard"""
    ada = await members("lobby", "ada")
    await expect_kind(ada, "join", "ada joined")
    bob = await members("lobby", "bob")
    for who in (bob, ada):
        got = await expect(who, "bob joined")
        join = {"type": "join", "room": "lobby", "user": "bob"}
        assert got == join, f"bob joined: expected {who.user} to hear {join}, got {got}"
    for number, (speaker, text) in enumerate([(ada, "hello"), (bob, "hi ada")], 1):
        await speaker.say(text)
        said = f"{speaker.user} said {text!r}"
        expected = {"type": "message", "id": number, "room": "lobby", "user": speaker.user}
        expected |= {"text": text}
        for who in (ada, bob):
            got = await expect(who, said)
            shown = {key: value for key, value in got.items() if key != "ts"}
            assert shown == expected, (
                f"{said}: expected {who.user} to receive {expected} (and a ts), got {got}"
            )


async def test_a_member_that_vanishes_leaves(members):
    """A member that vanishes without a close frame leaves: the others hear it"""
    ada = await members("lobby", "ada")
    await expect_kind(ada, "join", "ada joined")
    bob = await members("lobby", "bob")
    await expect_kind(ada, "join", "bob joined")
    bob.websocket.transport.abort()
    leave = {"type": "leave", "room": "lobby", "user": "bob"}
    got = await expect(ada, "bob vanished")
    assert got == leave, f"bob vanished: expected ada to hear {leave}, got {got}"


async def test_since_replays_what_was_missed(members):
    """?since=N replays the messages after N, between the welcome and the join"""
    ada = await members("lobby", "ada")
    await expect_kind(ada, "join", "ada joined")
    for text in ["one", "two", "three"]:
        await ada.say(text)
        await expect_kind(ada, "message", f"ada said {text!r}")
    bob = await members("lobby", "bob", since=1)
    assert bob.welcome.get("last_id") == 3, (
        f"3 messages said: expected last_id 3 in bob's welcome, got {bob.welcome}"
    )
    for text in ["two", "three"]:
        got = await expect(bob, "bob joined with ?since=1")
        assert (got.get("type"), got.get("text")) == ("message", text), (
            f"bob joined with ?since=1: expected the message {text!r} replayed, got {got}"
        )
    await expect_kind(bob, "join", "bob joined with ?since=1, after the replay")


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
            assert got == status, f"{path}: expected a refusal with HTTP {status}, got {got}"
            continue
        except TimeoutError:
            pytest.fail(f"{path}: no answer to the handshake within {TIMEOUT:g} s")
        pytest.fail(f"{path}: expected a refusal with HTTP {status}, the handshake was accepted")


async def test_a_binary_frame_closes_with_1003(members):
    """A binary frame closes the connection with 1003 (the chat speaks JSON text)"""
    ada = await members("lobby", "ada")
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
    ada = await members("lobby", "ada")
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
