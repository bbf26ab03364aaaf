"""The echo server with the websockets client: sizes, limits, HTTP endpoints."""

from __future__ import annotations

import contextlib
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from course_ws import BackgroundServer, serve_in_background
from course_ws.bench import BENCHMARKS
from course_ws.bench import echo as bench_echo
from course_ws.rfc6455 import (
    HttpHeadReader,
    Opcode,
    build_request,
    check_response,
    encode_frame,
    generate_mask,
)

SIZES = [0, 1, 125, 126, 65535, 65536, 2**20 - 1]


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with serve_in_background("echo") as server:
        yield server


@pytest.mark.parametrize("size", SIZES)
def test_text_and_binary_come_back_unchanged(server, size):
    text = "a" * size
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    with connect(server.url + "/echo", max_size=None) as websocket:
        websocket.send(text)
        assert websocket.recv(timeout=5) == text
        websocket.send(payload)
        got = websocket.recv(timeout=5)
        assert isinstance(got, bytes)
        assert got == payload


def test_message_over_max_size_is_closed_with_1009():
    with (
        serve_in_background("echo", max_size=1000) as small,
        connect(small.url + "/echo") as websocket,
    ):
        websocket.send(b"x" * 1000)
        assert websocket.recv(timeout=2) == b"x" * 1000
        websocket.send(b"x" * 1001)
        with pytest.raises(ConnectionClosedError) as closed:
            websocket.recv(timeout=2)
    assert closed.value.rcvd.code == 1009


def test_healthz_answers_ok(server):
    with urllib.request.urlopen(server.http_url + "/healthz", timeout=2) as response:
        assert (response.status, response.read()) == (200, b"ok\n")


def test_unknown_path_is_404_before_the_handshake(server):
    with pytest.raises(InvalidStatus) as refused:
        connect(server.url + "/chat/lobby", open_timeout=2)
    assert refused.value.response.status_code == 404
    with pytest.raises(urllib.error.HTTPError) as plain:
        urllib.request.urlopen(server.http_url + "/", timeout=2)
    with plain.value as response:  # an HTTPError holds the socket open until closed
        assert response.code == 404


def test_query_string_does_not_change_the_route(server):
    with connect(server.url + "/echo?user=ada") as websocket:
        websocket.send("ok")
        assert websocket.recv(timeout=2) == "ok"


def test_text_is_utf8_both_ways(server):
    text = "naïve café – 🚀"
    with connect(server.url + "/echo") as websocket:
        websocket.send(text)
        assert websocket.recv(timeout=2) == text


TCP_ESTABLISHED = 1


def raw_echo_client(url: str, receive_buffer: int = 4096) -> socket.socket:
    """A WebSocket client on a plain socket with a tiny receive buffer, handshake done."""
    parts = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(2)
    sock.connect((parts.hostname, parts.port))
    request, key = build_request(parts.netloc, parts.path)
    sock.sendall(request)
    reader = HttpHeadReader()
    handshake = None
    while handshake is None:
        data = sock.recv(4096)
        assert data, "the server closed the connection during the handshake"
        handshake = reader.feed(data)
    check_response(handshake[0], key)
    return sock


def send_without_reading(sock: socket.socket, size: int = 16 * 1024) -> None:
    """Send binary messages, never reading the echoes, until the server stops reading too.

    The echo handler stops reading once it is stuck sending (its incoming queue
    fills), and then our own sends block: a send that cannot finish in 0.2 s
    proves the server's handler is stuck.
    """
    frame = encode_frame(Opcode.BINARY, b"x" * size, mask=generate_mask())
    sock.settimeout(0.2)
    with contextlib.suppress(TimeoutError):
        for _ in range(10_000):  # ~160 MB: never reached; bounds the loop anyway
            sock.sendall(frame)
        raise AssertionError("the server kept reading 160 MB it could not send back")


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of ``sock`` (ESTABLISHED, CLOSE...), read without reading data."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="reads the TCP state (Linux)")
def test_a_client_that_sends_but_never_reads_is_closed_within_the_send_timeout():
    """Without a deadline, the handler waits in ``send`` forever, holding the buffers.

    Keepalive does not rescue it (its ping waits behind the backlog): it is on
    here, with a short interval, to show that.
    """
    timeouts = {"send_timeout": 0.5, "close_timeout": 0.5}
    with serve_in_background("echo", ping_interval=0.2, ping_timeout=0.2, **timeouts) as server:
        sock = raw_echo_client(server.url + "/echo")
        try:
            send_without_reading(sock)
            stuck = time.monotonic()
            deadline = stuck + sum(timeouts.values()) + 1.0
            while tcp_state(sock) == TCP_ESTABLISHED and time.monotonic() < deadline + 2:
                time.sleep(0.01)
            elapsed = time.monotonic() - stuck
            assert tcp_state(sock) != TCP_ESTABLISHED, "the server never dropped the client"
            assert elapsed <= sum(timeouts.values()) + 1.0, f"dropped after {elapsed:.2f} s"
        finally:
            sock.close()
            print(f"dropped {elapsed:.3f} s after the server stopped reading")
        assert any("nothing read for 0.5 s" in line for line in server.logs), server.logs


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads server CPU from /proc")
def test_bench_echo_quick_run_reports_a_row_per_server():
    """``course-ws bench echo --quick`` runs every server; its timings are not asserted."""
    report = bench_echo.run(quick=True)
    lines = str(report).splitlines()
    assert lines[0] == "course-ws bench echo --quick"
    for name in bench_echo.SERVERS:
        assert any(line.startswith(name) for line in lines), name
        assert all(sample.round_trips > 0 for sample in report.samples[name]), name
    assert "echo" in BENCHMARKS
