"""Checks for exercise ``presence`` (exercises/03_chat/presence.py)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from websockets.sync.client import ClientConnection, connect

from course_ws import BackgroundServer, serve_in_background

TIMEOUT = 1.0
"""Seconds to wait for an event that should come (it takes milliseconds on loopback)."""

Event = dict[str, Any]


@pytest.fixture
def server(load) -> Iterator[BackgroundServer]:
    with serve_in_background(load("presence").handler, log_level="error") as server:
        yield server


def arrive(server: BackgroundServer, user: str) -> ClientConnection:
    """A client called ``user``; use it in a ``with`` block."""
    return connect(f"{server.url}/?user={user}", open_timeout=TIMEOUT)


def vanish(client: ClientConnection) -> None:
    """Drop the TCP connection without a close frame, like a laptop losing its Wi-Fi."""
    client.socket.shutdown(socket.SHUT_RDWR)


def members(*users: str) -> Event:
    return {"type": "members", "users": list(users)}


def join(user: str) -> Event:
    return {"type": "join", "user": user}


def leave(user: str) -> Event:
    return {"type": "leave", "user": user}


def expect(
    client: ClientConnection, who: str, after: str, expected: Event, *, skip: Iterable[str] = ()
) -> None:
    """``client`` (called ``who``) receives ``expected`` next, within ``TIMEOUT`` s.

    Events of the types in ``skip`` that come first are passed over, so that, say,
    checking leaves does not depend on the list and the joins being right.
    """
    wanted = json.dumps(expected)
    while True:
        try:
            raw = client.recv(timeout=TIMEOUT)
        except TimeoutError:
            pytest.fail(f"{after}: expected {who} to receive {wanted}, got nothing")
        try:
            got = json.loads(raw)
        except (TypeError, ValueError):
            pytest.fail(f"{after}: expected {who} to receive {wanted}, got {raw!r} (not JSON)")
        if not (isinstance(got, dict) and got.get("type") in skip):
            break
    assert got == expected, f"{after}: expected {who} to receive {wanted}, got {json.dumps(got)}"


def settle(client: ClientConnection) -> None:
    """Read what ``client`` is sent until a ``leave`` event or ``TIMEOUT`` s, whichever first."""
    try:
        while json.loads(client.recv(timeout=TIMEOUT)).get("type") != "leave":
            pass
    except (TimeoutError, TypeError, ValueError, AttributeError):
        pass


def test_a_newcomer_gets_the_list_of_who_is_there(server):
    """A newcomer first gets the sorted list of who is already there"""
    with arrive(server, "bob") as bob:
        expect(bob, "bob", "bob connected first", members())
        with arrive(server, "ada") as ada:
            expect(ada, "ada", "ada connected after bob", members("bob"))
            with arrive(server, "cy") as cy:
                expect(cy, "cy", "cy connected after bob and ada", members("ada", "bob"))


def test_two_people_with_one_name_are_both_listed(server):
    """Two connections with the same name are listed twice: the list keeps duplicates"""
    with arrive(server, "ada") as first, arrive(server, "ada") as second:
        expect(first, "the first ada", "she connected first", members())
        expect(second, "the second ada", "she connected after the first", members("ada"))
        with arrive(server, "bob") as bob:
            expect(bob, "bob", "two clients called ada connected, then bob", members("ada", "ada"))


def test_everyone_there_hears_who_joins(server):
    """Everyone already there hears who joins (the newcomer does not)"""
    with arrive(server, "ada") as ada, arrive(server, "bob") as bob:
        expect(ada, "ada", "bob connected", join("bob"), skip={"members"})
        with arrive(server, "cy"):
            expect(ada, "ada", "cy connected", join("cy"))
            expect(bob, "bob", "cy connected", join("cy"), skip={"members"})


def test_everyone_still_there_hears_who_leaves(server):
    """Everyone still there hears who leaves, even a client that vanishes"""
    with arrive(server, "ada") as ada, arrive(server, "cy") as cy:
        with arrive(server, "bob"):
            pass  # bob leaves politely
        expect(ada, "ada", "bob left", leave("bob"), skip={"members", "join"})
        expect(cy, "cy", "bob left", leave("bob"), skip={"members", "join"})
        vanish(cy)
        expect(ada, "ada", "cy vanished", leave("cy"))


def test_who_left_is_not_listed_again(server):
    """Someone who left is not in a later newcomer's list"""
    with arrive(server, "ada") as ada:
        with arrive(server, "bob"):
            pass
        settle(ada)  # give the server a moment to see bob go
        with arrive(server, "dan") as dan:
            expect(dan, "dan", "bob came and went, then dan connected", members("ada"))
