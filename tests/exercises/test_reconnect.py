"""Checks for exercise ``reconnect`` (exercises/02_echo/reconnect.py)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from course_ws import BackgroundServer, serve_in_background
from course_ws.clients import wait_until

TIMEOUT = 3.0
DELAY = 0.05


class CountingDelays:
    """``reconnect_delays`` that wait ``DELAY`` s each time and count how often they were asked."""

    def __init__(self) -> None:
        self.drawn = 0

    def __call__(self) -> Generator[float]:
        while True:
            self.drawn += 1
            yield DELAY


def feed(*, per_connection: int | None = None, ending: str = "polite"):
    """A handler sending m0, m1, ... (numbered across connections) and how connections ended.

    After ``per_connection`` messages it ends the connection: ``polite`` closes with
    1001, ``abrupt`` drops TCP without a close frame (the client sees 1006).
    """
    numbers = itertools.count()
    close_codes: list[int | None] = []

    async def handler(websocket: ServerConnection) -> None:
        try:
            for _ in range(per_connection) if per_connection else itertools.count():
                await websocket.send(f"m{next(numbers)}")
                await asyncio.sleep(0.005)
            if ending == "polite":
                await websocket.close(1001, "going away")
            else:
                await asyncio.sleep(0.1)  # let the client read what was sent, then vanish
                websocket.transport.abort()
        except ConnectionClosed:
            pass
        close_codes.append(websocket.close_code)

    return handler, close_codes


@contextlib.asynccontextmanager
async def serving(handler: Callable[..., Any], **options: Any) -> AsyncIterator[BackgroundServer]:
    """``serve_in_background`` for a test whose client runs on this test's event loop.

    Stopping closes every client with 1001 and waits for each to answer; a blocking
    ``stop()`` would freeze the loop that has to answer, and wait out the close timeout
    for a client that ``collect`` left open.
    """
    server = serve_in_background(handler, **options)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


def expected(count: int) -> list[str]:
    return [f"m{n}" for n in range(count)]


async def run_collect(collect: Callable[..., Any], url: str, count: int, delays=None) -> Any:
    """Call the learner's ``collect``; turn a crash or a hang into a readable failure."""
    try:
        async with asyncio.timeout(TIMEOUT):
            return await collect(url, count, delays or CountingDelays())
    except TimeoutError:
        pytest.fail(f"collect(..., {count}, ...) did not return within {TIMEOUT:g} s")
    except Exception as exc:
        pytest.fail(f"collect raised {type(exc).__name__} ({exc}) instead of reconnecting")


def summary(got: Any) -> str:
    return f"{len(got)} messages {got[:4]}{'...' if len(got) > 4 else ''}"


async def test_collects_from_a_steady_server(load):
    """Collects messages from a server that never drops it"""
    handler, _ = feed()
    async with serving(handler) as server:
        got = await run_collect(load("reconnect").collect, server.url, 5)
    assert got == expected(5), f"expected {expected(5)}, got {got}"


async def test_reconnects_after_a_polite_close(load):
    """Reconnects when the server closes with 1001 (going away)"""
    handler, _ = feed(per_connection=3, ending="polite")
    async with serving(handler) as server:
        got = await run_collect(load("reconnect").collect, server.url, 10)
    assert got == expected(10), (
        f"expected 10 messages m0...m9 over 4 connections, got {summary(got)}: "
        "did the client connect again after the server closed with 1001?"
    )


async def test_reconnects_after_an_abrupt_drop(load):
    """Reconnects when the connection dies without a close frame (1006)"""
    handler, _ = feed(per_connection=3, ending="abrupt")
    async with serving(handler) as server:
        got = await run_collect(load("reconnect").collect, server.url, 7)
    assert got == expected(7), f"expected m0...m6 over 3 connections, got {summary(got)}"


async def test_waits_for_a_server_that_is_not_there_yet(load):
    """Keeps trying, with the given reconnect_delays, until the server is up"""
    placeholder = serve_in_background("echo")
    port = placeholder.port
    placeholder.stop()  # nothing listens on this port for now
    delays = CountingDelays()
    collect = load("reconnect").collect
    attempt = asyncio.create_task(run_collect(collect, f"ws://127.0.0.1:{port}", 3, delays))
    try:
        try:
            await wait_until(lambda: delays.drawn >= 2 or attempt.done(), within=TIMEOUT / 2)
        except TimeoutError:
            pytest.fail(
                "nothing listened yet, and the client never asked reconnect_delays for a delay: "
                "pass it on, connect(url, reconnect_delays=reconnect_delays)"
            )
        if attempt.done():
            await attempt  # the learner's error, turned into a failure by run_collect
            pytest.fail("collect returned while no server was listening yet")
        handler, _ = feed()
        async with serving(handler, port=port):
            got = await attempt
    finally:
        attempt.cancel()
    assert got == expected(3), f"expected {expected(3)}, got {got}"


async def test_closes_the_last_connection_normally(load):
    """Closes its last connection with 1000 when done"""
    handler, close_codes = feed()
    async with serving(handler) as server:
        await run_collect(load("reconnect").collect, server.url, 4)
        await wait_until(lambda: bool(close_codes), within=TIMEOUT, what="the server's handler end")
    assert close_codes == [1000], (
        f"the server saw the client leave with {close_codes[-1]} instead of 1000: "
        "await websocket.close() before returning from inside the loop"
    )
