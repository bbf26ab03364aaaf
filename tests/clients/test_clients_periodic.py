"""send_every against a real server: schedule, clean end on close, no burst after a stall."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from websockets.asyncio.client import connect

from course_ws import serve_in_background
from course_ws.clients import send_every

TIMEOUT = 2.0


async def close_after_two(websocket):
    """Read two messages, then close normally."""
    await websocket.recv()
    await websocket.recv()
    await websocket.close()


async def test_sends_every_message_on_schedule_and_returns_the_count():
    with serve_in_background("echo") as server:
        async with asyncio.timeout(TIMEOUT), connect(server.url + "/echo") as websocket:
            started = time.monotonic()
            sent = await send_every(websocket, 0.03, ["a", "b", b"c"])
            elapsed = time.monotonic() - started
            echoes = [await websocket.recv() for _ in range(3)]
    assert sent == 3
    assert echoes == ["a", "b", b"c"]
    assert elapsed >= 0.09 - 0.005  # three intervals: one after each message


async def test_returns_promptly_when_the_connection_closes_and_takes_no_extra_message():
    numbers = itertools.count()
    with serve_in_background(close_after_two) as server:
        async with asyncio.timeout(TIMEOUT), connect(server.url) as websocket:
            started = time.monotonic()
            sent = await send_every(websocket, 0.5, (f"n{n}" for n in numbers))
            elapsed = time.monotonic() - started
    assert sent == 2
    assert next(numbers) == 2, "a message was taken from the iterator for a closed connection"
    assert elapsed < 0.9, f"noticed the close only after {elapsed:.2f} s"


async def test_a_stall_skips_missed_ticks_instead_of_bursting():
    pulled: list[float] = []

    def messages():
        for n in range(6):
            pulled.append(time.monotonic())
            if n == 1:
                time.sleep(0.25)  # the loop stalls: five ticks of 0.05 s are missed
            yield f"m{n}"

    with serve_in_background("echo") as server:
        async with asyncio.timeout(TIMEOUT), connect(server.url + "/echo") as websocket:
            assert await send_every(websocket, 0.05, messages()) == 6
    gaps = [later - earlier for earlier, later in itertools.pairwise(pulled)]
    after_stall = gaps[2:]
    assert min(after_stall) > 0.02, f"messages went out in a burst after the stall: {gaps}"


async def test_interval_must_be_positive():
    with serve_in_background("echo") as server:
        async with connect(server.url + "/echo") as websocket:
            with pytest.raises(ValueError, match="interval must be positive"):
                await send_every(websocket, 0, ["x"])
