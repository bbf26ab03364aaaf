"""What every ASGI server of the catalogue (``asgi``, ``starlette``, ``fastapi``) must do.

The conformance, hostile-input and metrics suites already run against them;
these tests prove what only a server on uvicorn could get wrong: 1001 rather
than uvicorn's 1012 at shutdown, a stalled reader dropped through its outbox
within the close timeout (not left to uvicorn, which would wait forever), 1003
for a binary frame with nothing escaping (Starlette's ``Cannot call "send" once
a close message has been sent`` included), no error logged after a refusal,
wsproto as well as websockets-sansio, and nothing left behind. What a
framework adds is tested in ``test_starlette_server.py`` and
``test_fastapi_server.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from course_ws import BackgroundServer, serve_in_background
from course_ws.clients.chat import ChatClient, chat_url
from course_ws.clients.metrics import get_metrics
from course_ws.clients.probes import (
    LEAK_GAUGES,
    closed_with,
    fresh_room,
    gauges_after_everyone_left,
    scrape,
    serve_then_sigterm,
    stop_with_clients,
)
from course_ws.clients.waiting import tcp_established, wait_dropped, wait_until
from course_ws.hosting.catalogue import CATALOGUE
from course_ws.lab.fanout import stalled_client

ASGI_SERVERS = [name for name, entry in CATALOGUE.items() if "uvicorn" in entry.stack]
FAST = {"message_rate": 10_000.0, "message_burst": 10_000}
CLOSE_TIMEOUT = 0.5
SEND_AFTER_CLOSE = 'Cannot call "send"'

pytestmark = pytest.mark.parametrize("name", ASGI_SERVERS)


def metrics(server: BackgroundServer) -> dict[str, float]:
    return get_metrics(server.http_url)


def nothing_escaped(server: BackgroundServer) -> None:
    logs = "\n".join(server.logs)
    assert "Traceback" not in logs
    assert SEND_AFTER_CLOSE not in logs


async def test_stop_closes_chat_and_echo_clients_with_1001(name: str) -> None:
    server = serve_in_background(name, **FAST)
    try:
        stopped = await stop_with_clients(server.url, server.stop)
    finally:
        server.stop()
    assert stopped.chat_code == 1001
    assert (stopped.echo_code, stopped.echo_reason) == (1001, "server shutting down")


async def test_a_stalled_reader_is_dropped_within_the_close_timeout(name: str) -> None:
    """Its outbox crosses the limit (counted at /metrics), then 1013 or a reset within 0.5 s."""
    room = fresh_room()
    options = {"close_timeout": CLOSE_TIMEOUT, "log_level": "info", **FAST}
    with serve_in_background(name, **options) as server:
        stalled = await stalled_client(chat_url(server.url, room))
        try:
            async with await ChatClient.connect(server.url, room) as talker:
                loop = asyncio.get_running_loop()
                crossed = None
                for _ in range(1000):
                    await talker.say("x" * 4000)
                    await talker.next("message")  # the talker reads, or it would be dropped too
                    if (await scrape(server.http_url)).get(
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
        await asyncio.sleep(0.1)
        nothing_escaped(server)


async def test_a_binary_frame_on_chat_closes_with_1003_and_is_counted(name: str) -> None:
    with serve_in_background(name, log_level="info", **FAST) as server:
        async with await ChatClient.connect(server.url, fresh_room()) as client:
            await client.websocket.send(b"\x00\x01")
            assert await closed_with(client) == 1003
            assert client.websocket.close_reason == "chat messages are JSON text frames"
        found = await scrape(server.http_url)
        assert found['course_ws_members_dropped_total{code="1003"}'] == 1
        nothing_escaped(server)


async def test_metrics_return_to_zero_after_clients_leave(name: str) -> None:
    with serve_in_background(name, **FAST) as server:
        settled = await gauges_after_everyone_left(server.url, server.http_url)
    assert settled.during["course_ws_connections"] == 4
    assert settled.during["course_ws_room_members"] == 3
    assert settled.during["course_ws_rooms_active"] == 1
    assert settled.during["course_ws_messages_published_total"] == 1
    assert {gauge: settled.after[gauge] for gauge in LEAK_GAUGES} == dict.fromkeys(LEAK_GAUGES, 0)


def test_course_ws_serve_prints_its_urls_and_says_1001_on_sigterm(name: str) -> None:
    served = serve_then_sigterm(name)
    stack = re.escape(CATALOGUE[name].stack)
    assert re.fullmatch(rf"{name} \({stack}\) listening on 127\.0\.0\.1:\d+", served.banner)
    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+", served.ws_base)
    assert served.urls == [
        f"{served.ws_base}/echo",
        f"{served.ws_base}/chat/{{room}}",
        f"{served.http_base}/",
        f"{served.http_base}/healthz",
        f"{served.http_base}/metrics",
    ]
    assert served.echoed == "hi"
    assert '"welcome"' in served.welcome
    assert served.close_codes == [1001, 1001]
    assert served.returncode == 0
    assert "Traceback" not in served.stderr


async def test_a_refusal_before_accept_logs_no_error(name: str) -> None:
    """uvicorn 0.54 logs 'ASGI callable returned without completing handshake.' after an
    HTTP refusal it sent itself; the course's host marks the handshake finished instead."""
    with serve_in_background(name, log_level="info") as server:
        for target in ("/nowhere", "/chat/lobby?since=x"):
            with pytest.raises(InvalidStatus):
                async with connect(f"{server.url}{target}"):
                    pass
        await asyncio.sleep(0.2)  # the app call returns after the response went out
        errors = [line for line in server.logs if " ERROR " in line]
    assert not errors, errors


async def test_every_asgi_server_runs_on_wsproto_too(name: str) -> None:
    """``--ws wsproto`` swaps uvicorn's WebSocket implementation; the chat and 1001 stay."""
    server = serve_in_background(name, ws="wsproto")
    try:
        async with await ChatClient.connect(server.url, "wsproto", user="ada") as client:
            await client.say("over wsproto")
            assert (await client.next("message"))["text"] == "over wsproto"
            await asyncio.to_thread(server.stop)
            await client.websocket.wait_closed()
            assert client.websocket.close_code == 1001
    finally:
        server.stop()


async def test_an_echo_client_that_does_not_read_is_dropped_after_the_send_timeout(
    name: str,
) -> None:
    """The echo's replies stall; one timer per connection (not one per message) drops it:
    counted as 1013, the TCP connection gone within send + close timeout."""
    options = {"send_timeout": 0.5, "close_timeout": 0.5, **FAST}
    with serve_in_background(name, **options) as server:
        async with connect(f"{server.url}/echo", max_queue=1, max_size=None) as websocket:
            websocket.transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, 4096
            )

            async def send_without_reading() -> None:
                for _ in range(2_000):  # 128 MB at most: bounded, never reached
                    await websocket.send(b"x" * 65536)

            sending = asyncio.create_task(send_without_reading())
            try:
                await wait_until(
                    lambda: (
                        metrics(server).get('course_ws_members_dropped_total{code="1013"}', 0) == 1
                    ),
                    within=10,
                    what="the echo dropping its client with 1013",
                )
                dropped_at = asyncio.get_running_loop().time()
                await wait_dropped(websocket, within=0.5 + 1.0)
                assert asyncio.get_running_loop().time() - dropped_at < 1.5
            finally:
                sending.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await sending
        nothing_escaped(server)
