"""Checks for exercise ``rooms`` (exercises/03_chat/rooms.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest
from websockets.sync.client import ClientConnection, connect

from course_ws import BackgroundServer, serve_in_background

TIMEOUT = 1.0
"""Seconds to wait for something that should happen (it takes milliseconds on loopback)."""
QUIET = 0.3
"""Seconds of silence that count as "nothing arrived"."""


@pytest.fixture
def exercise(load) -> ModuleType:
    return load("rooms")


@pytest.fixture
def server(exercise: ModuleType) -> Iterator[BackgroundServer]:
    with serve_in_background(exercise.handler, log_level="error") as server:
        yield server


def join(server: BackgroundServer, room: str) -> ClientConnection:
    """A client in ``room``; use it in a ``with`` block."""
    return connect(f"{server.url}/room/{room}", open_timeout=TIMEOUT)


def vanish(client: ClientConnection) -> None:
    """Drop the TCP connection without a close frame, like a laptop losing its Wi-Fi."""
    client.socket.shutdown(socket.SHUT_RDWR)


def expect(client: ClientConnection, who: str, sent: str, expected: str) -> None:
    """``client`` (called ``who``) receives ``expected`` within ``TIMEOUT`` s."""
    try:
        got = client.recv(timeout=TIMEOUT)
    except TimeoutError:
        pytest.fail(f"sent {sent}: expected {who} to receive {expected!r}, got nothing")
    assert got == expected, f"sent {sent}: expected {who} to receive {expected!r}, got {got!r}"


def expect_silence(client: ClientConnection, who: str, sent: str) -> None:
    """Nothing reaches ``client`` (called ``who``) within ``QUIET`` s."""
    try:
        got = client.recv(timeout=QUIET)
    except TimeoutError:
        return
    pytest.fail(f"sent {sent}: expected nothing for {who}, got {got!r}")


def rooms_of(exercise: ModuleType) -> dict:
    rooms = getattr(exercise, "ROOMS", None)
    assert isinstance(rooms, dict), f"expected a module-level dict ROOMS, got {rooms!r}"
    return rooms


def wait_for(condition: Callable[[], bool]) -> bool:
    """Whether ``condition()`` becomes true within ``TIMEOUT`` s (the server runs in a thread)."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_message_reaches_everyone_else_in_the_room(server):
    """A message reaches every other client in the same room, unchanged"""
    with (
        join(server, "kitchen") as ada,
        join(server, "kitchen") as bob,
        join(server, "kitchen") as cy,
    ):
        ada.send("hello")
        expect(bob, "bob", "'hello' from ada in /room/kitchen", "hello")
        expect(cy, "cy", "'hello' from ada in /room/kitchen", "hello")
        bob.send("Grüße, ada 👋")
        expect(ada, "ada", "'Grüße, ada 👋' from bob", "Grüße, ada 👋")
        expect(cy, "cy", "'Grüße, ada 👋' from bob", "Grüße, ada 👋")


def test_the_sender_does_not_hear_itself(server):
    """The sender does not get its own message back"""
    with join(server, "kitchen") as ada, join(server, "kitchen"):
        ada.send("hello")
        expect_silence(ada, "ada, who sent it", "'hello' from ada in /room/kitchen")


def test_other_rooms_hear_nothing(server):
    """Clients in other rooms hear nothing"""
    with (
        join(server, "kitchen") as ada,
        join(server, "kitchen") as bob,
        join(server, "garden") as cy,
    ):
        ada.send("kitchen only")
        expect(bob, "bob", "'kitchen only' in /room/kitchen", "kitchen only")
        expect_silence(cy, "cy in /room/garden", "'kitchen only' in /room/kitchen")


def test_the_registry_forgets_who_leaves(server, exercise):
    """ROOMS forgets clients that leave (even abruptly), and rooms nobody is in"""
    rooms = rooms_of(exercise)

    def members() -> int:
        return len(rooms.get("lab", ()))

    with join(server, "lab") as ada:
        with join(server, "lab"):
            assert wait_for(lambda: members() == 2), (
                f"connected 2 clients to /room/lab: expected ROOMS['lab'] to hold 2 "
                f"connections, got {members()}"
            )
        assert wait_for(lambda: members() == 1), (
            f"one of 2 clients left: expected ROOMS['lab'] to hold 1 connection, got {members()}"
        )
        vanish(ada)
        assert wait_for(lambda: "lab" not in rooms), (
            f"the last client vanished: expected 'lab' gone from ROOMS, got {rooms!r}"
        )


def test_a_vanishing_client_is_not_an_error(load):
    """A client that vanishes does not make the handler fail"""
    with serve_in_background(load("rooms").handler, log_level="info") as server:
        with join(server, "lab") as ada:
            vanish(ada)
            assert wait_for(lambda: any("connection closed" in line for line in server.logs)), (
                "a client vanished: expected the server to notice, but it did not"
            )
        server.stop()  # returns once every handler has returned
    errors = [line.split(": ", 1)[1].splitlines()[0] for line in server.logs if " ERROR " in line]
    assert not errors, (
        f"a client vanished: expected no error in the server's log, got {errors[0]!r}"
    )
