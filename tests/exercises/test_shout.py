"""Checks for exercise ``shout`` (exercises/00_start/shout.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from websockets.sync.client import ClientConnection, connect

from course_ws import BackgroundServer, serve_in_background

TIMEOUT = 2.0


@pytest.fixture
def server(load) -> Iterator[BackgroundServer]:
    with serve_in_background(load("shout").handler, log_level="error") as server:
        yield server


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[ClientConnection]:
    with connect(server.url, open_timeout=TIMEOUT) as websocket:
        yield websocket


def answer(client: ClientConnection, message: str | bytes) -> str | bytes:
    client.send(message)
    try:
        return client.recv(timeout=TIMEOUT)
    except TimeoutError:
        pytest.fail(f"sent {message!r} and got no answer within {TIMEOUT:g} s")


def test_text_comes_back_in_upper_case(client):
    """Text comes back in upper case"""
    for sent, expected in [("hello", "HELLO"), ("Straße 1", "STRASSE 1"), ("", "")]:
        got = answer(client, sent)
        assert got == expected, f"sent {sent!r}: expected {expected!r}, got {got!r}"


def test_binary_comes_back_unchanged(client):
    """Binary comes back unchanged, as binary"""
    sent = b"abc\x00\xff"
    got = answer(client, sent)
    assert isinstance(got, bytes), f"sent bytes {sent!r}: expected bytes back, got text {got!r}"
    assert got == sent, f"sent {sent!r}: expected it unchanged, got {got!r}"


def test_answers_keep_their_order(client):
    """Many messages are all answered, in order"""
    sent = [f"message {n}" for n in range(50)]
    for message in sent:
        client.send(message)
    got = [client.recv(timeout=TIMEOUT) for _ in sent]
    expected = [message.upper() for message in sent]
    assert got == expected, f"expected {expected[:3]}..., got {got[:3]}..."


def test_closing_is_not_an_error(server, client):
    """The handler returns quietly when the client says goodbye"""
    answer(client, "bye")
    client.close()
    errors = [line.split(" ERROR ", 1)[1] for line in server.logs if " ERROR " in line]
    assert not errors, f"the server logged an error when the client closed: {errors[0]!r}"
