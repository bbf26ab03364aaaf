"""Checks for exercise ``asgi_echo`` (exercises/04_asgi/asgi_echo.py).

Two ways in, as notebook 04c teaches: the WebSocket and HTTP checks serve the
learner's ``app`` with the course's uvicorn host on a free 127.0.0.1 port
(:func:`course_ws.serve_in_background`) and talk to it over a real socket; the
lifespan and disconnect checks call ``app(scope, receive, send)`` directly with
events of our own, since that is all an ASGI server does. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping, Sequence
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws import BackgroundServer, serve_in_background

TIMEOUT = 2.0
"""Seconds for an answer that should come (it takes milliseconds on loopback)."""
ASGI = {"version": "3.0", "spec_version": "2.4"}

Message = MutableMapping[str, Any]
App = Callable[..., Awaitable[None]]


@pytest.fixture
def app(load: Callable[[str], Any]) -> App:
    return load("asgi_echo").app


@pytest.fixture
def server(app: App) -> Iterator[BackgroundServer]:
    with serve_in_background(app, log_level="info") as running:
        yield running


@contextlib.asynccontextmanager
async def client(server: BackgroundServer) -> AsyncIterator[ClientConnection]:
    """A WebSocket client of ``server``; the check fails, saying why, if the handshake does."""
    try:
        websocket = await connect(server.url + "/echo", open_timeout=TIMEOUT)
    except InvalidStatus as refused:
        pytest.fail(
            f"the WebSocket handshake was answered with HTTP {refused.response.status_code}, "
            "not 101: answer websocket.connect with websocket.accept"
        )
    except TimeoutError:
        pytest.fail(f"no answer to the WebSocket handshake within {TIMEOUT:g} s")
    async with websocket:
        yield websocket


async def call(
    app: App, scope: dict[str, Any], events: Sequence[Message]
) -> tuple[list[Message], bool]:
    """Call ``app`` as a server would: ``events`` come from ``receive``, one by one.

    Returns what the app sent, and whether it returned within ``TIMEOUT`` once it had
    had every event (a ``receive`` after the last one waits forever, as on a server).
    """
    pending = list(events)
    sent: list[Message] = []
    more = asyncio.Event()

    async def receive() -> Message:
        if not pending:
            await more.wait()  # never set: nothing else is coming
        return pending.pop(0)

    async def send(message: Message) -> None:
        sent.append(dict(message))

    try:
        async with asyncio.timeout(TIMEOUT):
            await app(scope, receive, send)
    except TimeoutError:
        return sent, False
    return sent, True


def types(messages: list[Message]) -> list[str]:
    return [message.get("type", "?") for message in messages]


async def round_trip(websocket: ClientConnection, message: str | bytes) -> str | bytes:
    await websocket.send(message)
    try:
        async with asyncio.timeout(TIMEOUT):
            return await websocket.recv()
    except TimeoutError:
        pytest.fail(f"sent {message!r} and got nothing back within {TIMEOUT:g} s")
    except ConnectionClosed as closed:
        pytest.fail(f"sent {message!r} and the connection closed ({closed})")


async def test_lifespan(app):
    """The lifespan: startup and shutdown are answered, then the app returns"""
    scope = {"type": "lifespan", "asgi": ASGI, "state": {}}
    events = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent, returned = await call(app, scope, events)
    expected = ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert types(sent) == expected, (
        f"after lifespan.startup and lifespan.shutdown: expected the app to send {expected}, "
        f"got {types(sent)}"
    )
    assert returned, "after lifespan.shutdown.complete: expected the app to return"


async def test_text_comes_back_as_text(server):
    """A text message comes back unchanged, as text"""
    async with client(server) as websocket:
        for sent in ["hello", "héllo, wörld ✓", ""]:
            got = await round_trip(websocket, sent)
            assert got == sent, f"sent the text {sent!r}: expected it back, got {got!r}"


async def test_bytes_come_back_as_bytes(server):
    """A binary message comes back unchanged, as bytes"""
    async with client(server) as websocket:
        for sent in [b"\x00\x01\x02\xff", bytes(range(256)) * 64, b""]:
            got = await round_trip(websocket, sent)
            shown = sent if len(sent) < 10 else f"{len(sent)} bytes"
            assert got == sent, f"sent the bytes {shown!r}: expected them back, got {got!r:.80}"


async def test_disconnect_ends_the_app(app):
    """After websocket.disconnect, the app returns"""
    scope = {"type": "websocket", "asgi": ASGI, "path": "/echo", "query_string": b""}
    events = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hi"},
        {"type": "websocket.disconnect", "code": 1000, "reason": ""},
    ]
    sent, returned = await call(app, scope, events)
    expected = [{"type": "websocket.accept"}, {"type": "websocket.send", "text": "hi"}]
    assert sent == expected, (
        f"connect, 'hi', disconnect: expected the app to send {expected}, got {sent}"
    )
    assert returned, (
        f"after websocket.disconnect the app was still running {TIMEOUT:g} s later: return "
        "on disconnect, nothing more will come"
    )


def test_plain_http_gets_426(server):
    """A plain HTTP GET gets 426 Upgrade Required, with Upgrade: websocket and a text"""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
    try:
        connection.request("GET", "/echo")
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    assert response.status == 426, (
        f"GET /echo: expected 426 Upgrade Required, got {response.status} {response.reason}"
    )
    upgrade = response.getheader("Upgrade")
    assert upgrade == "websocket", (
        f"GET /echo: expected the header Upgrade: websocket, got {upgrade!r}"
    )
    assert body.strip(), "GET /echo: expected a short text saying why, got an empty body"
