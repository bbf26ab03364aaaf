"""Checks for exercise ``echo_server`` (exercises/02_echo/echo_server.py).

The exercise is a whole program, so it is checked as one: each check starts
``python echo_server.py PORT`` in a subprocess, reads the port it prints, talks
to it with the ``websockets`` client, and kills it at the end, whatever happened.
The file is never imported here: a program without an ``if __name__ == "__main__":``
guard would start serving inside pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from course_ws.tooling.learner_programs import Program

TIMEOUT = 2.0
"""Seconds for an answer, or for the close frame after Ctrl-C."""
EXIT = 5.0
"""Seconds for the program to end after Ctrl-C."""

Start = Callable[..., Awaitable[Program]]


@pytest.fixture
def start(run_program: Start) -> Start:
    """``await start(port)`` runs the program and returns once it said where it listens."""
    return lambda port=0: run_program("echo_server", port)


@contextlib.asynccontextmanager
async def client(program: Program) -> AsyncIterator[ClientConnection]:
    try:
        websocket = await connect(program.url, open_timeout=TIMEOUT)
    except (OSError, TimeoutError) as exc:
        pytest.fail(f"printed {program.url} but connecting there failed: {exc!r}")
    async with websocket:
        yield websocket


async def round_trip(websocket: ClientConnection, message: str | bytes) -> str | bytes:
    await websocket.send(message)
    try:
        async with asyncio.timeout(TIMEOUT):
            return await websocket.recv()
    except TimeoutError:
        pytest.fail(f"sent {message!r} and got nothing back within {TIMEOUT:g} s")
    except ConnectionClosed as closed:
        pytest.fail(f"sent {message!r} and the server closed the connection ({closed})")


async def end_of(websocket: ClientConnection) -> ConnectionClosed:
    """How the connection ended, once the server ends it (within ``TIMEOUT``)."""
    try:
        async with asyncio.timeout(TIMEOUT):
            message = await websocket.recv()
    except TimeoutError:
        pytest.fail(f"after Ctrl-C, the connection was still open {TIMEOUT:g} s later")
    except ConnectionClosed as closed:
        return closed
    pytest.fail(f"after Ctrl-C, expected a close frame with 1001, got the message {message!r}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_prints_where_it_listens(start: Start):
    """With port 0 it prints 'listening on ws://127.0.0.1:PORT' for a free port"""
    program = await start(0)
    assert program.port != 0, "printed port 0: print the port the server really listens on"


async def test_text_is_echoed(start: Start):
    """Text comes back unchanged, as text"""
    async with client(await start(0)) as websocket:
        for sent in ["Hello, echo!", "", "ünïcødé ✓"]:
            got = await round_trip(websocket, sent)
            assert got == sent, f"sent {sent!r}: expected it back, got {got!r}"


async def test_binary_is_echoed(start: Start):
    """Binary comes back unchanged, as bytes"""
    async with client(await start(0)) as websocket:
        sent = b"\x00\x01\xfe\xff"
        got = await round_trip(websocket, sent)
        assert got == sent, f"sent the bytes {sent!r}: expected them back as bytes, got {got!r}"


async def test_listens_on_the_port_given(start: Start):
    """`python echo_server.py PORT` listens on that PORT"""
    port = free_port()
    program = await start(port)
    assert program.port == port, f"started with port {port}, but it printed {program.url}"
    async with client(program) as websocket:
        assert await round_trip(websocket, "on the port I asked for") == "on the port I asked for"


async def test_two_clients_at_once(start: Start):
    """Two clients connected at once each get their own messages back"""
    program = await start(0)
    async with client(program) as alice, client(program) as bob:
        assert await round_trip(alice, "from alice") == "from alice"
        got = await round_trip(bob, "from bob")
        assert got == "from bob", f"bob sent 'from bob' and got {got!r}"


async def test_ctrl_c_closes_clients_with_1001(start: Start):
    """Ctrl-C (SIGINT) closes every client with 1001 (going away)"""
    program = await start(0)
    async with client(program) as websocket:
        assert await round_trip(websocket, "before Ctrl-C") == "before Ctrl-C"
        program.process.send_signal(signal.SIGINT)
        closed = await end_of(websocket)
    assert closed.rcvd is not None, (
        "after Ctrl-C, the connection dropped without a close frame (1006): "
        "leave `async with serve(...)` so that it closes every client with 1001"
    )
    assert closed.rcvd.code == 1001, (
        f"after Ctrl-C, expected close code 1001 (going away), got {closed.rcvd}"
    )


async def test_ctrl_c_exits_with_status_0(start: Start):
    """Ctrl-C (SIGINT) ends the program within a few seconds, with exit status 0"""
    program = await start(0)
    program.process.send_signal(signal.SIGINT)
    try:
        status = await asyncio.to_thread(program.process.wait, EXIT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"after Ctrl-C, the program was still running {EXIT:g} s later")
    error = program.last_error_line()
    assert status == 0, f"after Ctrl-C, expected exit status 0, got {status}" + (
        f" ({error})" if error else ""
    )
