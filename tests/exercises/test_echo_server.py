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
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from course_ws.tooling.exercises import find_exercise

STARTUP = 5.0
"""Seconds for the program to print its port (a cold interpreter on a slow laptop)."""
TIMEOUT = 2.0
"""Seconds for an answer, or for the close frame after Ctrl-C."""
EXIT = 5.0
"""Seconds for the program to end after Ctrl-C."""
LISTENING = re.compile(r"listening on ws://127\.0\.0\.1:(\d+)")
EXPECTED_LINE = "'listening on ws://127.0.0.1:PORT'"


@dataclass
class Program:
    """The learner's program, running: its process, the URL it printed, its stderr file."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    stderr: IO[bytes]

    def last_error_line(self) -> str:
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""


Start = Callable[..., Awaitable[Program]]


@contextlib.contextmanager
def ctrl_c_inherited() -> Iterator[None]:
    """Let the child react to SIGINT even if this process ignores it (nohup, background jobs)."""
    main_thread = threading.current_thread() is threading.main_thread()
    if not main_thread or signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the child starts with SIG_DFL
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def spawn(path: Path, port: int, stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    """``python path port``, its stdout piped to us, its stderr into a file."""
    with ctrl_c_inherited():
        return subprocess.Popen(
            [sys.executable, str(path), str(port)], stdout=subprocess.PIPE, stderr=stderr
        )


async def end(process: subprocess.Popen[bytes]) -> int | None:
    """Kill ``process`` if it still runs and reap it; its exit status. Never waits long."""
    if process.poll() is None:
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        await asyncio.to_thread(process.wait, EXIT)
    return process.returncode


@pytest.fixture
def program_path(request: pytest.FixtureRequest) -> Path:
    target = "solutions" if request.config.getoption("--solutions") else "exercises"
    return find_exercise("echo_server").path(target)


@pytest.fixture
async def start(program_path: Path) -> AsyncIterator[Start]:
    """``await start(port)`` runs the program and returns once it said where it listens."""
    started: list[Program] = []
    files = contextlib.ExitStack()

    async def start_program(port: int = 0) -> Program:
        command = f"python echo_server.py {'PORT' if port else 0}"
        # stderr goes to a file, not a pipe: a chatty program can never block on it
        stderr = files.enter_context(tempfile.TemporaryFile())  # noqa: SIM115 (closed by files)
        process = spawn(program_path, port, stderr)
        program = Program(process, "", 0, stderr)
        started.append(program)
        assert process.stdout is not None
        printed: list[str] = []
        try:
            async with asyncio.timeout(STARTUP):
                # readline blocks: in a thread, which the kill at the end releases
                while line := (await asyncio.to_thread(process.stdout.readline)).decode(
                    errors="replace"
                ):
                    printed.append(line.strip())
                    if found := LISTENING.search(line):
                        program.port = int(found.group(1))
                        program.url = f"ws://127.0.0.1:{program.port}"
                        return program
        except TimeoutError:
            pytest.fail(
                f"`{command}` printed no {EXPECTED_LINE} line within {STARTUP:g} s"
                + (f" (it printed: {printed[-3:]})" if printed else "")
                + ": did you print it with flush=True?"
            )
        status = await end(process)
        error = program.last_error_line()
        pytest.fail(
            f"`{command}` exited (status {status}) without "
            f"printing {EXPECTED_LINE}"
            + (f"; its last error line: {error}" if error else "")
            + (f"; it printed: {printed[-3:]}" if printed else "; it printed nothing")
        )

    with files:
        yield start_program
        for program in started:
            await end(program.process)


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
