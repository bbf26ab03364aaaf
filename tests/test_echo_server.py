"""The echo server with the websockets client: sizes, limits, HTTP endpoints."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.exceptions import ConnectionClosedError, InvalidStatus
from websockets.sync.client import connect

from course_ws import BackgroundServer, serve_in_background

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
