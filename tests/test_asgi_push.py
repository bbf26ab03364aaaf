"""The lab's pushing apps and plain uvicorn, as notebook 04a shows them (real loopback sockets).

- The two-task clock hears the client leave from ``websocket.disconnect``, at
  once, with its code and reason; the send-only clock only when a push fails.
- A send-only app that left one message unread never reads the close frame
  (uvicorn pauses reading until the app receives): it pushes until the client
  gives up and drops the TCP connection, and the client records 1006.
- Plain uvicorn closes WebSockets with 1012 before the lifespan shutdown; the
  course's host says 1001 first.
Both of uvicorn's WebSocket implementations behave alike.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK

from course_ws.hosting.background import BackgroundServer, serve_in_background
from course_ws.lab.asgi_push import TICK, leave_while_pushed, send_only_clock, two_task_clock
from course_ws.lab.asgi_trace import AsgiTrace
from course_ws.lab.plain_uvicorn import serve_with_uvicorn
from course_ws.servers._asgi_host import Receive, Scope, Send
from course_ws.servers.asgi import create_app

IMPLEMENTATIONS = ["websockets-sansio", "wsproto"]
CLOSE_TIMEOUT = 0.5


@pytest.mark.parametrize("ws", IMPLEMENTATIONS)
async def test_the_two_task_clock_hears_the_client_leave_at_once(ws: str) -> None:
    trace = AsgiTrace(two_task_clock)
    with serve_with_uvicorn(trace, ws=ws) as server:
        for said in (None, "hello"):
            departure = await leave_while_pushed(
                server.url, trace, say=said, close_timeout=CLOSE_TIMEOUT
            )
            assert departure.noticed_by == "websocket.disconnect code=1000 reason='bye'"
            assert departure.noticed_after < TICK / 2
            assert departure.pushes_after == 0
            assert departure.client_close == "1000 (OK) bye"
            assert departure.call.steps[-1].kind == "returned"


@pytest.mark.parametrize("ws", IMPLEMENTATIONS)
async def test_the_send_only_clock_hears_it_only_from_a_failed_push(ws: str) -> None:
    trace = AsgiTrace(send_only_clock)
    with serve_with_uvicorn(trace, ws=ws) as server:
        silent = await leave_while_pushed(server.url, trace, close_timeout=CLOSE_TIMEOUT)
        heard = await leave_while_pushed(
            server.url, trace, say="hello", close_timeout=CLOSE_TIMEOUT
        )
    # A silent client: the close frame is read, and the next push fails.
    assert silent.noticed_by.startswith("a send raised ClientDisconnected")
    assert TICK / 2 < silent.noticed_after < 3 * TICK
    assert silent.client_close == "1000 (OK) bye"
    assert not silent.call.received("websocket.disconnect")
    # One unread message: the close frame is never read; pushes go on until the
    # client drops the TCP connection after its close timeout.
    assert heard.noticed_by.startswith("a send raised ClientDisconnected")
    assert heard.client_close.startswith("1006")
    assert heard.client_close_took >= CLOSE_TIMEOUT
    assert heard.noticed_after >= CLOSE_TIMEOUT
    assert heard.pushes_after >= CLOSE_TIMEOUT / TICK / 2
    assert heard.call.steps[-1].kind == "raised"


async def stop_under_a_client(server: BackgroundServer, url: str) -> tuple[ConnectionClosed, float]:
    """Stop ``server`` under an echo client: how the client was closed, and when stopping began."""
    async with connect(url + "/echo") as websocket:
        await websocket.send("hi")
        await websocket.recv()
        stopping = time.monotonic()
        await asyncio.to_thread(server.stop)
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(5):
                await websocket.recv()
    return closed.value, stopping


@pytest.mark.parametrize("ws", IMPLEMENTATIONS)
async def test_plain_uvicorn_says_1012_before_the_lifespan_shutdown_the_host_1001(
    ws: str,
) -> None:
    plain_trace = AsgiTrace(create_app())
    plain = serve_with_uvicorn(plain_trace, ws=ws)
    closed, stopping = await stop_under_a_client(plain, plain.url)
    assert isinstance(closed, ConnectionClosedError)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1012
    lines = plain_trace.timeline(since=stopping).splitlines()
    assert "websocket.disconnect" in lines[0]
    assert "code=1012" in lines[0]
    assert "lifespan.shutdown" in lines[2]

    hosted_trace = AsgiTrace(create_app())
    hosted = serve_in_background(hosted_trace, ws=ws)
    closed, _ = await stop_under_a_client(hosted, hosted.url)
    assert isinstance(closed, ConnectionClosedOK)
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1001, "server shutting down")
    disconnect = hosted_trace.last().received("websocket.disconnect")[0]
    assert disconnect["code"] == 1001


async def fails_to_start(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})


def test_serve_with_uvicorn_reports_a_failed_start_and_unknown_options() -> None:
    with pytest.raises(RuntimeError, match="uvicorn"):
        serve_with_uvicorn(fails_to_start)
    with pytest.raises(TypeError, match="'colour'"):
        serve_with_uvicorn(fails_to_start, colour="blue")
