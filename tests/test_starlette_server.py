"""What is specific to the ``starlette`` server: the chat on Starlette 1.x on the course's host.

The conformance, hostile-input and metrics suites run against it (it is in
the catalogue). These tests prove what Starlette could get wrong on its own:
1001 rather than uvicorn's 1012 at shutdown, refusals before accept with the
service's status (``send_denial_response``) counted once, a close decided by
the chat or by the outbox that never lets Starlette's ``Cannot call "send"
once a close message has been sent`` escape, and nothing left behind.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from course_ws import serve_in_background
from course_ws.clients.chat import ChatClient, chat_url
from course_ws.clients.metrics import get_metrics
from course_ws.clients.probes import (
    LEAK_GAUGES,
    closed_with,
    fresh_room,
    gauges_after_everyone_left,
    handshake_refusal,
    scrape,
    serve_then_sigterm,
    stop_with_clients,
)
from course_ws.clients.waiting import tcp_established, wait_dropped, wait_until
from course_ws.lab.fanout import stalled_client

NAME = "starlette"
FAST = {"message_rate": 10_000.0, "message_burst": 10_000}
CLOSE_TIMEOUT = 0.5
SEND_AFTER_CLOSE = 'Cannot call "send"'


async def test_stop_closes_chat_and_echo_clients_with_1001() -> None:
    server = serve_in_background(NAME, **FAST)
    try:
        stopped = await stop_with_clients(server.url, server.stop)
    finally:
        server.stop()
    assert stopped.chat_code == 1001
    assert (stopped.echo_code, stopped.echo_reason) == (1001, "server shutting down")


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [("?user=no%20spaces", 400, "user must be"), ("?since=-1", 400, "since must be")],
)
async def test_the_service_refuses_before_accept_with_its_status(
    query: str, status: int, says: str
) -> None:
    with serve_in_background(NAME, **FAST) as server:
        refusal = await handshake_refusal(f"{server.url}/chat/{fresh_room()}{query}")
        assert refusal is not None, "the handshake was accepted"
        assert refusal.status == status
        assert refusal.content_type.startswith("text/plain")
        assert says in refusal.text
        found = await scrape(server.http_url)
    assert found[f'course_ws_handshake_refusals_total{{status="{status}"}}'] == 1  # counted once
    assert found["course_ws_connections"] == 0


async def test_over_the_per_address_limit_is_429_before_accept() -> None:
    with serve_in_background(NAME, max_connections_per_address=1, **FAST) as server:
        name = fresh_room()
        async with await ChatClient.connect(server.url, name):
            refusal = await handshake_refusal(chat_url(server.url, name))
        assert refusal is not None
        assert refusal.status == 429
        found = await scrape(server.http_url)
    assert found['course_ws_handshake_refusals_total{status="429"}'] == 1


async def test_a_binary_frame_closes_with_1003_and_nothing_escapes() -> None:
    with serve_in_background(NAME, log_level="info", **FAST) as server:
        async with await ChatClient.connect(server.url, fresh_room()) as client:
            await client.websocket.send(b"\x00\x01")
            assert await closed_with(client) == 1003
            assert client.websocket.close_reason == "chat messages are JSON text frames"
        found = await scrape(server.http_url)
        assert found['course_ws_members_dropped_total{code="1003"}'] == 1
        logs = "\n".join(server.logs)
    assert "Traceback" not in logs
    assert SEND_AFTER_CLOSE not in logs


async def test_a_stalled_reader_is_dropped_within_the_close_timeout() -> None:
    """The outbox closes it through Starlette's WebSocket (1013), then resets it."""
    name = fresh_room()
    with serve_in_background(NAME, close_timeout=CLOSE_TIMEOUT, log_level="info", **FAST) as server:
        stalled = await stalled_client(chat_url(server.url, name))
        try:
            async with await ChatClient.connect(server.url, name) as talker:
                for _ in range(1000):
                    await talker.say("x" * 4000)
                    await talker.next("message")
                    found = await scrape(server.http_url)
                    if found.get('course_ws_members_dropped_total{code="1013"}', 0) >= 1:
                        break
                else:
                    pytest.fail("the stalled member was never counted as dropped")
                await wait_dropped(stalled, within=CLOSE_TIMEOUT + 3)
                assert not tcp_established(stalled)
                await talker.say("the others carry on")
                assert (await talker.next("message"))["text"] == "the others carry on"
                await wait_until(
                    lambda: get_metrics(server.http_url)["course_ws_room_members"] == 1,
                    within=3,
                    what="the stalled member left the room",
                )
        finally:
            stalled.transport.abort()
        await asyncio.sleep(0.1)
        logs = "\n".join(server.logs)
    assert "Traceback" not in logs
    assert SEND_AFTER_CLOSE not in logs


async def test_metrics_return_to_zero_after_clients_leave() -> None:
    with serve_in_background(NAME, **FAST) as server:
        settled = await gauges_after_everyone_left(server.url, server.http_url)
    assert settled.during["course_ws_connections"] == 4
    assert settled.during["course_ws_room_members"] == 3
    assert settled.during["course_ws_messages_published_total"] == 1
    assert {gauge: settled.after[gauge] for gauge in LEAK_GAUGES} == dict.fromkeys(LEAK_GAUGES, 0)


def test_course_ws_serve_starlette_prints_its_urls_and_says_1001_on_sigterm() -> None:
    served = serve_then_sigterm(NAME)
    assert re.fullmatch(
        r"starlette \(Starlette on uvicorn\) listening on 127\.0\.0\.1:\d+", served.banner
    )
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
