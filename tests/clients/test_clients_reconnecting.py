"""keep_connected against real servers on 127.0.0.1: restarts, abrupt drops, clean stops."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws import serve_in_background
from course_ws.clients import Backoff, ConnectionEvent, keep_connected, send_every, wait_until

FAST = Backoff(first=0.02, factor=2, cap=0.2)
TIMEOUT = 3.0


def kinds(events: list[ConnectionEvent]) -> list[str]:
    return [event.kind for event in events]


def recording_echo(*, abort_on: str | None = None):
    """An echo handler that remembers how each connection ended; ``abort_on`` drops the TCP."""
    close_codes: list[int | None] = []

    async def handler(websocket: ServerConnection) -> None:
        try:
            async for message in websocket:
                if message == abort_on:
                    websocket.transport.abort()  # no close frame: the client sees 1006
                else:
                    await websocket.send(message)
        except ConnectionClosed:
            pass
        close_codes.append(websocket.close_code)

    return handler, close_codes


async def test_reconnects_after_a_restart_on_the_same_port_and_carries_on():
    events: list[ConnectionEvent] = []
    echoes: list[tuple[int, str]] = []
    ticks = (f"tick {n}" for n in itertools.count())

    async def session(websocket):
        connection = kinds(events).count("connected")
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(send_every(websocket, 0.01, ticks))
            async for message in websocket:
                echoes.append((connection, message))

    first = serve_in_background("echo")
    port = first.port
    client = asyncio.create_task(
        keep_connected(first.url + "/echo", session, reconnect_delays=FAST, on_event=events.append)
    )
    second = None
    try:
        await wait_until(lambda: len(echoes) >= 3, within=TIMEOUT, what="three echoes")
        await asyncio.to_thread(first.stop)
        await wait_until(lambda: kinds(events).count("waiting") >= 2, within=TIMEOUT)
        second = await asyncio.to_thread(serve_in_background, "echo", port=port)
        await wait_until(lambda: echoes[-1][0] == 2, within=TIMEOUT, what="echoes on connection 2")
    finally:
        client.cancel()
        with pytest.raises(asyncio.CancelledError):
            await client
        if second is not None:
            second.stop()
    assert kinds(events)[:2] == ["connected", "closed"]
    assert "1001 (going away)" in events[1].detail
    assert {"failed", "waiting"} <= set(kinds(events))
    assert next(e.detail for e in events if e.kind == "failed") == "ConnectionRefusedError"
    assert kinds(events)[-2:] == ["connected", "stopped"]
    assert "1000 (OK)" in events[-1].detail
    numbers = [int(message.split()[1]) for _, message in echoes]
    assert numbers == sorted(numbers), "echoes came back out of order"
    assert len(set(numbers)) == len(numbers), "a tick was echoed twice"


async def test_an_abrupt_drop_is_1006_and_the_client_reconnects():
    events: list[ConnectionEvent] = []
    server_side, _ = recording_echo(abort_on="vanish")
    answers: list[str] = []

    async def session(websocket):
        first_time = kinds(events).count("connected") == 1
        await websocket.send("vanish" if first_time else "hello")
        answers.append(await websocket.recv())

    with serve_in_background(server_side) as server:
        async with asyncio.timeout(TIMEOUT):
            await keep_connected(server.url, session, reconnect_delays=FAST, on_event=events.append)
    assert kinds(events) == ["connected", "closed", "connected", "finished"]
    assert "1006 (abnormal closure [internal])" in events[1].detail
    assert answers == ["hello"]


async def test_a_session_that_returns_ends_the_loop_with_a_normal_close():
    server_side, close_codes = recording_echo()
    events: list[ConnectionEvent] = []

    async def session(websocket):
        await websocket.send("once")
        assert await websocket.recv() == "once"

    with serve_in_background(server_side) as server:
        async with asyncio.timeout(TIMEOUT):
            await keep_connected(server.url, session, on_event=events.append)
        await wait_until(lambda: bool(close_codes), within=TIMEOUT)
    assert kinds(events) == ["connected", "finished"]
    assert close_codes == [1000], "the server saw the client crash, not leave"


async def test_cancelling_the_client_closes_with_1000():
    server_side, close_codes = recording_echo()
    events: list[ConnectionEvent] = []

    async def session(websocket):
        await websocket.wait_closed()  # idle until told to stop

    with serve_in_background(server_side) as server:
        client = asyncio.create_task(keep_connected(server.url, session, on_event=events.append))
        await wait_until(lambda: bool(events), within=TIMEOUT)
        client.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(client, TIMEOUT)
        await wait_until(lambda: bool(close_codes), within=TIMEOUT)
    assert close_codes == [1000]
    assert kinds(events) == ["connected", "stopped"]


async def test_a_fatal_error_is_raised_not_retried():
    events: list[ConnectionEvent] = []

    async def session(websocket):  # pragma: no cover - never connects
        raise AssertionError("connected to a path that does not exist")

    with serve_in_background("echo") as server, pytest.raises(InvalidStatus) as refused:
        async with asyncio.timeout(TIMEOUT):
            await keep_connected(
                server.url + "/nowhere", session, reconnect_delays=FAST, on_event=events.append
            )
    assert refused.value.response.status_code == 404
    assert [str(e.detail) for e in events] == ["InvalidStatus (fatal)"]


async def test_nothing_listening_yet_is_retried_with_the_given_delays():
    events: list[ConnectionEvent] = []
    placeholder = serve_in_background("echo")
    port = placeholder.port
    placeholder.stop()  # now nothing listens on port

    async def session(websocket):
        await websocket.send("up")
        await websocket.recv()

    client = asyncio.create_task(
        keep_connected(
            f"ws://127.0.0.1:{port}/echo", session, reconnect_delays=FAST, on_event=events.append
        )
    )
    await wait_until(lambda: kinds(events).count("failed") >= 3, within=TIMEOUT)
    with serve_in_background("echo", port=port):
        await asyncio.wait_for(client, TIMEOUT)
    delays = [float(e.detail.split()[2]) for e in events if e.kind == "waiting"]
    assert delays[:3] == [0.02, 0.04, 0.08]
    assert kinds(events)[-2:] == ["connected", "finished"]
