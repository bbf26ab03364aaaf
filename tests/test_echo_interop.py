"""The echo server with a client that is not the websockets library: RawClient, built on
course_ws.rfc6455 over a plain socket, so both ends of each exchange are independent code."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from course_ws import serve_in_background
from course_ws.clients.raw import ConnectionClosed, RawClient
from course_ws.rfc6455 import Frame, Opcode, parse_close

SIZES = [0, 125, 126, 64 * 1024, 2**20 - 1]
COURSE_WS = str(Path(sys.executable).with_name("course-ws"))


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    """``course-ws serve echo --port 0`` in its own process: the command a learner runs."""
    process = subprocess.Popen(
        [COURSE_WS, "serve", "echo", "--port", "0", "--log-level", "warning"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        process.stdout.readline()
        yield process.stdout.readline().strip()
    finally:
        process.terminate()
        assert process.wait(10) == 0


@pytest.mark.parametrize("size", SIZES)
def test_text_of_every_length_class(echo_url, size):
    text = "".join(chr(ord("a") + n % 26) for n in range(size))
    with RawClient.connect(echo_url) as client:
        client.send_text(text)
        assert client.recv() == text


@pytest.mark.parametrize("size", SIZES)
def test_binary_of_every_length_class(echo_url, size):
    payload = bytes(n % 251 for n in range(size))
    with RawClient.connect(echo_url) as client:
        client.send_binary(payload)
        got = client.recv()
        assert isinstance(got, bytes)
        assert got == payload


def test_fragmented_message_is_reassembled(echo_url):
    with RawClient.connect(echo_url) as client:
        client.send_fragmented([b"caf", "é".encode()[:1], "é".encode()[1:] + b"!"])
        assert client.recv() == "café!"


def test_ping_gets_a_pong_with_the_same_payload(echo_url):
    with RawClient.connect(echo_url) as client:
        client.ping(b"are you there")
        frame = client.recv_frame()
        assert (frame.opcode, frame.payload) == (Opcode.PONG, b"are you there")


def test_close_handshake_echoes_the_code(echo_url):
    client = RawClient.connect(echo_url)
    assert client.close(1000, "done").code == 1000


def test_handshake_does_not_negotiate_compression(echo_url):
    with RawClient.connect(echo_url) as client:
        assert b"permessage-deflate" not in client.response_bytes.lower()
        assert client.response_bytes.startswith(b"HTTP/1.1 101 ")


def frames_until_closed(client: RawClient) -> list[Frame]:
    """Every frame up to and including the server's CLOSE, never answering anything."""
    frames: list[Frame] = []
    while not frames or frames[-1].opcode is not Opcode.CLOSE:
        try:
            frames.append(client.recv_frame())
        except ConnectionClosed:
            break
    return frames


def test_server_keepalive_drops_a_peer_that_never_answers_pings():
    with serve_in_background("echo", ping_interval=0.2, ping_timeout=0.2) as server:
        client = RawClient.connect(server.url + "/echo", timeout=3)
        started = time.monotonic()
        frames = frames_until_closed(client)
        elapsed = time.monotonic() - started
        with contextlib.suppress(ConnectionClosed):
            client.close()  # hang up, or the server waits close_timeout for us
    assert frames[0].opcode is Opcode.PING
    assert frames[-1].opcode is Opcode.CLOSE
    assert parse_close(frames[-1].payload).code == 1011
    assert 0.3 < elapsed < 2
