"""``course-ws bench transports``: polling, long-polling and WebSocket all deliver the feed,
and the bytes are counted at the socket. Latencies are recorded, never asserted."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest
from websockets.sync.client import connect

from course_ws import BackgroundServer
from course_ws.bench.transports import CountingHttpClient, Plan, TransportsReport, run, serve_feed

TINY = Plan(count=6, interval=0.03, poll_every=0.02)
NAMES = ["polling", "long-polling", "WebSocket"]


@pytest.fixture(scope="module")
def report() -> TransportsReport:
    return run(plan=TINY)


@pytest.fixture
def feed() -> Iterator[BackgroundServer]:
    server = serve_feed()
    with server:
        yield server


def publish(server: BackgroundServer, count: int, interval: float = 0.0) -> None:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=3)
    try:
        connection.request("POST", f"/publish?count={count}&interval={interval}")
        assert connection.getresponse().status == 202
    finally:
        connection.close()


def test_every_transport_receives_every_message(report):
    assert [result.name for result in report.results] == NAMES
    for result in report.results:
        assert result.messages == TINY.count, result.name
        assert all(latency >= 0 for latency in result.latencies), result.name


def test_websocket_costs_a_frame_header_per_message_and_http_costs_headers(report):
    websocket, long_polling, polling = (
        report["WebSocket"],
        report["long-polling"],
        report["polling"],
    )
    assert (websocket.requests, websocket.bytes_up) == (0, 0)
    assert websocket.setup_bytes > 200  # the handshake: request + 101, counted apart
    assert websocket.bytes_per_message < 80  # ~60 bytes of JSON + a 2-byte header
    assert long_polling.bytes_per_message > websocket.bytes_per_message + 100
    assert 1 <= long_polling.requests <= TINY.count  # each answer brings at least one message
    assert polling.requests >= 1


def test_report_is_a_table_with_a_row_per_transport(report):
    text = str(report)
    assert text.startswith("course-ws bench transports (full run): 6 messages, one every 30 ms")
    for name in NAMES:
        assert any(line.startswith(name) for line in text.splitlines()), name
    assert "handshake" in text


def test_counting_client_counts_exactly_what_crossed_the_socket(feed):
    with CountingHttpClient(feed.host, feed.port) as client:
        assert client.get("/poll?since=0") == b"[]"
        assert client.bytes_up == len(client.last_request)
        assert client.bytes_down == len(client.last_response)
        assert client.last_request.startswith(b"GET /poll?since=0 HTTP/1.1\r\n")
        assert client.last_response.startswith(b"HTTP/1.1 200 OK\r\n")
        assert client.last_response.endswith(b"\r\n\r\n[]")
        client.get("/poll?since=0")
        assert client.requests == 2  # one keep-alive connection for both


def test_long_poll_waits_for_news_and_websocket_pushes_it(feed):
    with (
        connect(f"{feed.url}/ws", open_timeout=3) as websocket,
        CountingHttpClient(feed.host, feed.port) as client,
    ):
        publish(feed, 3, 0.01)
        first = json.loads(client.get("/longpoll?since=0"))
        assert first[0]["id"] == 0
        pushed = [json.loads(websocket.recv(timeout=3))["id"] for _ in range(3)]
        assert pushed == [0, 1, 2]
