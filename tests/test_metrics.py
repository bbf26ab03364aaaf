"""GET /metrics on every catalogue server: the same names, and nothing left after everyone goes."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from course_ws import BackgroundServer, serve_in_background
from course_ws.chat.metrics import read_metrics
from course_ws.clients.waiting import wait_until
from course_ws.hosting.catalogue import CATALOGUE

SERVERS = [name for name, entry in CATALOGUE.items() if "GET /metrics" in entry.endpoints]


def metrics(server: BackgroundServer) -> dict[str, float]:
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return read_metrics(response.read().decode())


@pytest.fixture(params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[BackgroundServer]:
    with serve_in_background(request.param) as running:
        yield running


def test_every_server_in_the_catalogue_serves_metrics() -> None:
    assert set(SERVERS) == set(CATALOGUE)


async def test_connections_are_counted_and_return_to_zero(server: BackgroundServer) -> None:
    assert metrics(server)["course_ws_connections"] == 0
    async with connect(f"{server.url}/echo") as first, connect(f"{server.url}/echo") as second:
        await first.send("hi")
        await second.send("hi")
        assert await first.recv() == await second.recv() == "hi"
        assert metrics(server)["course_ws_connections"] == 2
    await wait_until(
        lambda: metrics(server)["course_ws_connections"] == 0, within=5, what="0 connections"
    )


async def test_refusals_are_counted_by_status(server: BackgroundServer) -> None:
    with pytest.raises(InvalidStatus):
        async with connect(f"{server.url}/nowhere"):
            pass
    with pytest.raises(urllib.error.HTTPError):
        await asyncio.to_thread(urllib.request.urlopen, f"{server.http_url}/nowhere", timeout=5)
    assert metrics(server)['course_ws_handshake_refusals_total{status="404"}'] == 2
