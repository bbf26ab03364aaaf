"""A stalled reader of a bounded broadcast is dropped for certain, on real loopback sockets.

In websockets 17, ``close()`` waits in ``drain()`` while the write buffer is
over its high-water mark, so ``close(1013)`` to a client that stopped reading
never finishes by itself. These tests measure what a client sees: its TCP
connection reset within the close timeout (plus a second of slack) of the
server noticing that it fell too far behind.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from course_ws.clients.waiting import wait_dropped
from course_ws.fanout.bounded import BoundedBroadcast, close_for_certain
from course_ws.lab.fanout import shrink_send_buffer, stalled_client

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_INFO"), reason="reads the TCP state with TCP_INFO (Linux)"
)

CLOSE_TIMEOUT = 0.5
LIMIT = 64 * 1024
MESSAGE = "x" * 8192


async def test_a_stalled_reader_is_reset_within_the_close_timeout_of_crossing_the_limit():
    send = BoundedBroadcast(LIMIT)
    members: set[ServerConnection] = set()
    joined, left = asyncio.Event(), asyncio.Event()

    async def handler(websocket: ServerConnection) -> None:
        shrink_send_buffer(websocket)
        members.add(websocket)
        joined.set()
        try:
            await websocket.wait_closed()
        finally:
            members.discard(websocket)
            left.set()

    async with serve(
        handler, "127.0.0.1", 0, compression=None, close_timeout=CLOSE_TIMEOUT
    ) as server:
        host, port = server.sockets[0].getsockname()[:2]
        stuck = await stalled_client(f"ws://{host}:{port}/")
        try:
            async with asyncio.timeout(2):
                await joined.wait()
            async with asyncio.timeout(5):
                while send.slow.closed == 0:
                    send(members, MESSAGE)
                    await asyncio.sleep(0.002)
                crossed = time.monotonic()
                crossed_loop = asyncio.get_running_loop().time()
            assert send.slow.crossed_at is not None
            assert abs(send.slow.crossed_at - crossed) < 0.1  # recorded by SlowClients too
            elapsed = await wait_dropped(stuck, within=CLOSE_TIMEOUT + 3) - crossed_loop
            print(f"stalled reader dropped {elapsed:.3f} s after crossing the limit")
            assert elapsed <= CLOSE_TIMEOUT + 1.0
            async with asyncio.timeout(2):  # and the server's handler has ended
                await left.wait()
        finally:
            stuck.transport.abort()


async def test_close_for_certain_is_a_plain_close_when_the_peer_answers():
    closed = asyncio.Event()

    async def handler(websocket: ServerConnection) -> None:
        await websocket.recv()
        await close_for_certain(websocket, 1013, "too slow", timeout=2)
        closed.set()

    async with serve(handler, "127.0.0.1", 0) as server:
        host, port = server.sockets[0].getsockname()[:2]
        async with connect(f"ws://{host}:{port}/") as client:
            await client.send("hi")
            async with asyncio.timeout(2):
                await client.wait_closed()
                await closed.wait()
        assert client.close_code == 1013
        assert client.close_reason == "too slow"


async def test_close_closes_each_open_connection_with_the_code_given_in_the_background():
    """How the ``chat`` server has a room's members resume (1012): once each, even when
    asked twice, without waiting for any of them."""
    send = BoundedBroadcast(LIMIT)
    members: list[ServerConnection] = []
    both = asyncio.Event()

    async def handler(websocket: ServerConnection) -> None:
        members.append(websocket)
        if len(members) == 2:
            both.set()
        await websocket.wait_closed()

    async with serve(handler, "127.0.0.1", 0) as server:
        host, port = server.sockets[0].getsockname()[:2]
        async with (
            connect(f"ws://{host}:{port}/") as one,
            connect(f"ws://{host}:{port}/") as two,
        ):
            async with asyncio.timeout(2):
                await both.wait()
            send.close(members, 1012, "resume")
            send.close(members, 1012, "resume")  # already closing: nothing more
            async with asyncio.timeout(2):
                await one.wait_closed()
                await two.wait_closed()
        assert (one.close_code, one.close_reason) == (1012, "resume")
        assert (two.close_code, two.close_reason) == (1012, "resume")
