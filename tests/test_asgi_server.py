"""What is specific to the ``asgi`` server: the chat as a raw ASGI app on the course's uvicorn host.

The conformance, hostile-input and metrics suites already run against it (it
is in the catalogue); these tests prove what only an ASGI server could get
wrong: 1001 rather than uvicorn's 1012 at shutdown, a stalled reader dropped
through its outbox within the close timeout (not left to uvicorn, which would
wait forever), 1003 for a binary frame, and nothing left behind.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as connect_sync

from course_ws import BackgroundServer, serve_in_background
from course_ws.chat.metrics import read_metrics
from course_ws.clients.chat import ChatClient, chat_url
from course_ws.clients.waiting import tcp_established, wait_dropped, wait_until
from course_ws.lab.fanout import stalled_client

COURSE_WS = str(Path(sys.executable).with_name("course-ws"))
FAST = {"message_rate": 10_000.0, "message_burst": 10_000}
CLOSE_TIMEOUT = 0.5
LEAK_GAUGES = (
    "course_ws_connections",
    "course_ws_room_members",
    "course_ws_rooms_active",
    "course_ws_broker_subscriptions",
)


def room() -> str:
    return f"r{uuid.uuid4().hex[:12]}"


def metrics(server: BackgroundServer) -> dict[str, float]:
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5) as response:
        return read_metrics(response.read().decode())


async def scrape(server: BackgroundServer) -> dict[str, float]:
    return await asyncio.to_thread(metrics, server)


async def closed_with(client: ChatClient) -> int | None:
    try:
        while True:
            await client.event(timeout=5)
    except ConnectionClosed:
        return client.websocket.close_code


async def test_stop_closes_chat_and_echo_clients_with_1001() -> None:
    server = serve_in_background("asgi", **FAST)
    try:
        chat = await ChatClient.connect(server.url, room(), user="ada")
        echo = await connect(server.url + "/echo")
        await echo.send("hi")
        assert await echo.recv() == "hi"
        await asyncio.to_thread(server.stop)
        assert await closed_with(chat) == 1001
        with pytest.raises(ConnectionClosedOK):
            await asyncio.wait_for(echo.recv(), 5)
        assert (echo.close_code, echo.close_reason) == (1001, "server shutting down")
    finally:
        server.stop()


async def test_a_stalled_reader_is_dropped_within_the_close_timeout() -> None:
    """Its outbox crosses the limit (counted at /metrics), then 1013 or a reset within 0.5 s."""
    name = room()
    with serve_in_background("asgi", close_timeout=CLOSE_TIMEOUT, **FAST) as server:
        stalled = await stalled_client(chat_url(server.url, name))
        try:
            async with await ChatClient.connect(server.url, name) as talker:
                loop = asyncio.get_running_loop()
                crossed = None
                for _ in range(1000):
                    await talker.say("x" * 4000)
                    await talker.next("message")  # the talker reads, or it would be dropped too
                    if (await scrape(server)).get(
                        'course_ws_members_dropped_total{code="1013"}', 0
                    ) >= 1:
                        crossed = loop.time()
                        break
                assert crossed is not None, "the stalled member was never counted as dropped"
                dropped = await wait_dropped(stalled, within=CLOSE_TIMEOUT + 3)
                elapsed = dropped - crossed
                print(f"dropped {elapsed * 1000:.0f} ms after /metrics counted it")
                assert elapsed < CLOSE_TIMEOUT + 1
                assert not tcp_established(stalled)
                await talker.say("the others carry on")
                assert (await talker.next("message"))["text"] == "the others carry on"
                await wait_until(
                    lambda: metrics(server)["course_ws_room_members"] == 1,
                    within=3,
                    what="the stalled member left the room",
                )
        finally:
            stalled.transport.abort()


async def test_a_binary_frame_on_chat_closes_with_1003_and_is_counted() -> None:
    with serve_in_background("asgi", **FAST) as server:
        async with await ChatClient.connect(server.url, room()) as client:
            await client.websocket.send(b"\x00\x01")
            assert await closed_with(client) == 1003
            assert client.websocket.close_reason == "chat messages are JSON text frames"
        found = await scrape(server)
        assert found['course_ws_members_dropped_total{code="1003"}'] == 1


async def test_metrics_return_to_zero_after_clients_leave() -> None:
    name = room()
    with serve_in_background("asgi", **FAST) as server:
        clients = [await ChatClient.connect(server.url, name, user=f"u{n}") for n in range(3)]
        echo = await connect(server.url + "/echo")
        await clients[0].say("hello")
        for client in clients:
            await client.next("message")
        found = await scrape(server)
        assert found["course_ws_connections"] == 4
        assert found["course_ws_room_members"] == 3
        assert found["course_ws_rooms_active"] == 1
        assert found["course_ws_messages_published_total"] == 1
        await clients[0].close()
        await clients[2].close()
        clients[1].websocket.transport.abort()  # one leaves without a goodbye: the same
        await echo.close()

        def all_zero() -> bool:
            now = metrics(server)
            return all(now[gauge] == 0 for gauge in LEAK_GAUGES)

        await wait_until(all_zero, within=5, what="every gauge back to 0")


def drain(client: ClientConnection) -> None:
    """Read until the connection closes (raises its ConnectionClosed)."""
    while True:
        client.recv(timeout=10)


def test_course_ws_serve_asgi_prints_its_urls_and_says_1001_on_sigterm() -> None:
    process = subprocess.Popen(
        [COURSE_WS, "serve", "asgi", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert re.match(r"asgi \(raw ASGI 3 on uvicorn\) listening on 127\.0\.0\.1:\d+$", first)
        urls = [process.stdout.readline().strip() for _ in range(5)]
        base = re.fullmatch(r"(ws://127\.0\.0\.1:\d+)/echo", urls[0])
        assert base, urls
        http = base[1].replace("ws://", "http://")
        assert urls[1:] == [
            f"{base[1]}/chat/{{room}}",
            f"{http}/",
            f"{http}/healthz",
            f"{http}/metrics",
        ]
        with (
            connect_sync(urls[0]) as echo,
            connect_sync(f"{base[1]}/chat/{room()}") as chat,
        ):
            echo.send("hi")
            assert echo.recv(timeout=2) == "hi"
            assert '"welcome"' in str(chat.recv(timeout=2))
            process.send_signal(signal.SIGTERM)
            for client in (echo, chat):
                with pytest.raises(ConnectionClosedOK) as closed:
                    drain(client)
                assert closed.value.rcvd is not None
                assert closed.value.rcvd.code == 1001
        assert process.wait(10) == 0
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
