"""Checks for exercise ``bouncer`` (exercises/02_echo/bouncer.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from course_ws import BackgroundServer, serve_in_background
from course_ws.clients import wait_until

TIMEOUT = 2.0


@pytest.fixture
def server(load) -> Iterator[BackgroundServer]:
    with serve_in_background(load("bouncer").handler, log_level="info") as server:
        yield server


@pytest.fixture
async def client(server: BackgroundServer) -> AsyncIterator[ClientConnection]:
    async with connect(server.url, open_timeout=TIMEOUT) as websocket:
        yield websocket


async def outcome(client: ClientConnection, message: str | bytes) -> str | bytes | ConnectionClosed:
    """What the server did after ``message``: its answer, or how it closed the connection."""
    await client.send(message)
    try:
        async with asyncio.timeout(TIMEOUT):
            return await client.recv()
    except ConnectionClosed as closed:
        return closed
    except TimeoutError:
        pytest.fail(f"sent {message!r} and nothing happened within {TIMEOUT:g} s")


def describe(result: str | bytes | ConnectionClosed) -> str:
    if isinstance(result, ConnectionClosed):
        return f"the connection closed ({result})"
    return f"the answer {result!r}"


async def test_ping_gets_pong(client):
    """The text 'ping' is answered with 'pong'"""
    got = await outcome(client, "ping")
    assert got == "pong", f"sent 'ping': expected the answer 'pong', got {describe(got)}"


async def test_other_text_is_echoed(client):
    """Other text comes back unchanged"""
    for sent in ["hello", "PING", "bye bye", ""]:
        got = await outcome(client, sent)
        assert got == sent, f"sent {sent!r}: expected it back, got {describe(got)}"


async def test_bye_closes_with_1000(client):
    """The text 'bye' closes the connection with 1000 and the reason 'bye'"""
    got = await outcome(client, "bye")
    assert isinstance(got, ConnectionClosed), (
        f"sent 'bye': expected the server to close with 1000, got {describe(got)}"
    )
    assert got.rcvd is not None, (
        "sent 'bye': the server dropped the connection without a close frame"
    )
    assert (got.rcvd.code, got.rcvd.reason) == (1000, "bye"), (
        f"sent 'bye': expected close code 1000 and reason 'bye', got {got.rcvd.code} "
        f"and {got.rcvd.reason!r}"
    )


async def test_binary_closes_with_1003(client):
    """A binary message closes the connection with 1003 (unsupported data)"""
    got = await outcome(client, b"\x00\x01")
    assert isinstance(got, ConnectionClosed), (
        f"sent bytes: expected the server to close with 1003, got {describe(got)}"
    )
    assert got.rcvd is not None, (
        "sent bytes: the server dropped the connection without a close frame"
    )
    assert (got.rcvd.code, got.rcvd.reason) == (1003, "text only"), (
        f"sent bytes: expected close code 1003 and reason 'text only', got {got.rcvd.code} "
        f"and {got.rcvd.reason!r}"
    )


async def test_a_vanishing_client_is_not_an_error(server, client):
    """A client that vanishes (1006) does not make the handler fail"""
    assert await outcome(client, "hi") == "hi"
    client.transport.abort()  # gone without a close frame, like a dropped network
    await wait_until(
        lambda: any("connection closed" in line for line in server.logs),
        within=TIMEOUT,
        what="the server noticing that the client left",
    )
    await asyncio.to_thread(server.stop)  # returns once every handler has returned
    errors = [entry.splitlines()[0] for entry in server.logs if " ERROR " in entry]
    assert not errors, (
        f"the server logged an error when the client vanished: {errors[0].split(': ', 1)[1]!r}"
    )
