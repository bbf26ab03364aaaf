"""Checks for exercise ``chat_server`` (exercises/03_chat/chat_server.py).

The exercise is a whole program, so it is checked as one: each check starts
``python chat_server.py 0`` in a subprocess, reads the port it prints, joins rooms
with :class:`course_ws.clients.chat.ChatClient`, and kills the program at the end,
whatever happened. Every wait is bounded. The file is never imported here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from chat_expect import TIMEOUT, Event, expect, expect_silence
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws.clients.chat import ChatClient, chat_url
from course_ws.tooling.learner_programs import Program

WELCOME = 1.0
"""Seconds for the welcome, once connected."""


@pytest.fixture
async def program(run_program: Callable[..., Awaitable[Program]]) -> Program:
    """The program, started with port 0, once it has said where it listens; killed after."""
    return await run_program("chat_server")


@pytest.fixture
async def members(program: Program) -> AsyncIterator[Callable[..., Awaitable[ChatClient]]]:
    """``await join(room, user, since=None)``: a member that has read its welcome."""
    joined: list[ChatClient] = []

    async def join(room: str, user: str, since: int | None = None) -> ChatClient:
        where = chat_url("", room, user=user, since=since)
        try:
            client = await ChatClient.connect(
                program.url, room, user=user, since=since, timeout=WELCOME, open_timeout=TIMEOUT
            )
        except InvalidStatus as refused:
            pytest.fail(f"connecting to {where}: refused with HTTP {refused.response.status_code}")
        except TimeoutError:
            pytest.fail(f"connecting to {where}: no welcome event within {WELCOME:g} s")
        except ConnectionClosed as closed:
            pytest.fail(f"connecting to {where}: closed ({closed}) before any welcome event")
        except ValueError as wrong:
            pytest.fail(f"connecting to {where}: {wrong}")
        joined.append(client)
        return client

    yield join
    for client in joined:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(TIMEOUT):
                await client.close()


def without_ts(event: Event) -> Event:
    return {key: value for key, value in event.items() if key != "ts"}


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


async def test_join_and_leave(members):
    """Everyone, the newcomer included, hears who joins; those left hear who leaves"""
    ada = await members("lobby", "ada")
    join = {"type": "join", "room": "lobby", "user": "ada"}
    got = await expect(ada, "ada joined")
    assert got == join, f"ada joined: expected her to hear {join} after the welcome, got {got}"
    bob = await members("lobby", "bob")
    join = join | {"user": "bob"}
    for who in (bob, ada):
        got = await expect(who, "bob joined")
        assert got == join, f"bob joined: expected {who.user} to hear {join}, got {got}"
    bob.websocket.transport.abort()  # bob vanishes, without a close frame
    leave = {"type": "leave", "room": "lobby", "user": "bob"}
    got = await expect(ada, "bob vanished")
    assert got == leave, f"bob vanished: expected ada to hear {leave}, got {got}"


async def test_messages_reach_every_member(members):
    """A say reaches every member of the room, with ids 1, 2, 3… and a ts"""
    ada = await members("lobby", "ada")
    bob = await members("lobby", "bob")
    await ada.next("join", timeout=TIMEOUT)  # ada's own join
    for who in (ada, bob):
        await who.next("join", timeout=TIMEOUT)  # bob's join
    for number, (speaker, text) in enumerate([(ada, "hello"), (bob, "hi ada"), (ada, "bye")], 1):
        await speaker.say(text)
        said = f"{speaker.user} said {text!r}"
        expected = {"type": "message", "id": number, "room": "lobby", "user": speaker.user}
        expected |= {"text": text}
        for who in (ada, bob):
            got = await expect(who, said)
            assert without_ts(got) == expected, (
                f"{said}: expected {who.user} to receive {expected} (and a ts), got {got}"
            )
            assert isinstance(got.get("ts"), int | float), (
                f"{said}: expected a number of seconds in 'ts', got {got.get('ts')!r}"
            )


async def test_rooms_are_separate(members):
    """Ids count per room, and other rooms hear nothing"""
    ada = await members("lobby", "ada")
    await ada.say("in the lobby")
    await ada.next("message", timeout=TIMEOUT)
    cy = await members("kitchen", "cy")
    await cy.next("join", timeout=TIMEOUT)
    await cy.say("in the kitchen")
    got = await expect(cy, "cy said 'in the kitchen'")
    assert (got.get("type"), got.get("id")) == ("message", 1), (
        f"the kitchen's first message: expected a message with id 1, got {got}"
    )
    await expect_silence(ada, "cy said 'in the kitchen'")


async def test_bad_frames_get_an_error_and_the_connection_stays_open(members):
    """Not JSON, or not a say: an error event, and the connection stays open"""
    ada = await members("lobby", "ada")
    await ada.next("join", timeout=TIMEOUT)
    for frame, code in [
        ("not json", "bad_json"),
        (json.dumps({"type": "shout", "text": "HI"}), "bad_message"),
        (json.dumps({"type": "say", "text": "   "}), "bad_message"),
        (json.dumps(["say", "hello"]), "bad_message"),
    ]:
        await ada.websocket.send(frame)
        got = await expect(ada, f"sent {frame!r}")
        assert (got.get("type"), got.get("code")) == ("error", code), (
            f"sent {frame!r}: expected an error event with code {code!r}, got {got}"
        )
        assert isinstance(got.get("detail"), str), f"sent {frame!r}: expected a 'detail', got {got}"
    await ada.say("still here")
    got = await expect(ada, "after the bad frames, ada said 'still here'")
    assert (got.get("type"), got.get("text")) == ("message", "still here"), (
        f"after the bad frames, ada said 'still here': expected that message, got {got}"
    )


async def test_since_resumes_without_losing_a_message(members):
    """?since=N replays the messages after N, before the join"""
    ada = await members("lobby", "ada")
    for text in ["one", "two", "three"]:
        await ada.say(text)
        await ada.next("message", timeout=TIMEOUT)
    bob = await members("lobby", "bob", since=1)
    assert bob.welcome.get("last_id") == 3, (
        f"3 messages said: expected last_id 3 in the welcome, got {bob.welcome}"
    )
    for text in ["two", "three"]:
        got = await expect(bob, "bob joined with ?since=1")
        assert (got.get("type"), got.get("text")) == ("message", text), (
            f"bob joined with ?since=1: expected the message {text!r} replayed, got {got}"
        )
    got = await expect(bob, "bob joined with ?since=1, and got what he missed")
    assert got.get("type") == "join", f"after the replay: expected bob's join, got {got}"


async def test_ctrl_c_closes_members_with_1001(members, program):
    """Ctrl-C (SIGINT) closes every member with 1001 (going away)"""
    ada = await members("lobby", "ada")
    program.process.send_signal(signal.SIGINT)
    try:
        async with asyncio.timeout(TIMEOUT):
            async for _ in ada.websocket:
                pass
    except TimeoutError:
        pytest.fail(f"after Ctrl-C, ada's connection was still open {TIMEOUT:g} s later")
    except ConnectionClosed:
        pass
    closed = ada.websocket.protocol.close_rcvd
    assert closed is not None, "after Ctrl-C, the connection dropped without a close frame"
    assert closed.code == 1001, f"after Ctrl-C, expected close code 1001, got {closed}"
