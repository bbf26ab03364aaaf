"""The uvicorn host of the ASGI servers, on real loopback sockets.

A minimal ASGI app stands in for the chat adapters: ``/echo``, ``/refuse/{status}``
and ``/stream``, which pushes messages through an outbox as fast as it can. The
tests prove what a client sees: 1001 (not uvicorn's 1012) when the host stops,
real HTTP refusals with a body, and a reader that stopped reading dropped within
the close timeout of falling too far behind. Each test also checks that nothing
is left: no task, no tracked connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws.clients.waiting import tcp_established, wait_dropped
from course_ws.hosting.listening import bind_listener, socket_address
from course_ws.lab.fanout import stalled_client
from course_ws.options import ServeOptions
from course_ws.servers._asgi_host import (
    HTTP_RESPONSE,
    HostMiddleware,
    Message,
    Receive,
    Scope,
    Send,
    StartedUvicorn,
    asgi_outbox,
    hosted_connection,
    refuse,
    start_asgi_app,
)

IMPLEMENTATIONS = ["websockets-sansio", "wsproto"]
CLOSE_TIMEOUT = 0.5
OUTBOX_LIMIT = 64 * 1024
CHUNK = "x" * 8192


@dataclass
class Seen:
    """What the app observed, for the tests to check."""

    crossed: list[float] = field(default_factory=list)
    """loop.time() each time a streaming outbox refused a message (over its limit)."""
    pushed: list[int] = field(default_factory=list)
    """Messages each streaming outbox accepted before that."""
    crossing: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when the first streaming outbox crossed its limit."""
    open_at_lifespan_shutdown: list[int] = field(default_factory=list)
    app_sends_after_close: list[str] = field(default_factory=list)
    flooded: int = 0
    """Messages /flood got through ``send`` so far."""


class DemoApp:
    """A raw ASGI app: lifespan, /echo, /refuse/{status}, /refuse-without-extension,
    /stream (through an outbox) and /flood (plain ``await send``)."""

    def __init__(self) -> None:
        self.seen = Seen()
        self.started: StartedUvicorn | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
        elif scope["type"] == "websocket":
            path = scope["path"]
            if path == "/echo":
                await self.echo(receive, send)
            elif path.startswith("/refuse/"):
                status = int(path.removeprefix("/refuse/"))
                await refuse(scope, send, status, f"refused with {status}: see the docs")
            elif path == "/refuse-without-extension":
                extensions = {k: v for k, v in scope["extensions"].items() if k != HTTP_RESPONSE}
                await refuse({**scope, "extensions": extensions}, send, 401, "no token")
            elif path == "/stream":
                count = parse_qs(scope["query_string"].decode()).get("count", ["0"])[0]
                await self.stream(scope, receive, send, int(count) or None)
            elif path == "/flood":
                await self.flood(receive, send)
            else:
                await refuse(scope, send, 404, f"no endpoint at {path}")
        else:
            raise RuntimeError(f"unexpected scope {scope['type']}")

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.started is not None:
                    self.seen.open_at_lifespan_shutdown.append(self.started.open_websockets)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def echo(self, receive: Receive, send: Send) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message: Message = await receive()
            if message["type"] == "websocket.disconnect":
                break
            message["type"] = "websocket.send"
            await send(message)
        # ASGI 2.4 allows a send after the disconnect to raise: the host makes it an OSError
        try:
            await send({"type": "websocket.send", "text": "too late"})
        except OSError as exc:
            self.seen.app_sends_after_close.append(type(exc).__name__)

    async def stream(self, scope: Scope, receive: Receive, send: Send, count: int | None) -> None:
        """Push ``count`` numbered messages (default: until refused) through an outbox."""
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        loop = asyncio.get_running_loop()
        async with asgi_outbox(
            scope, send, max_bytes=OUTBOX_LIMIT, close_timeout=CLOSE_TIMEOUT, name="stream"
        ) as outbox:
            pushed = 0
            while count is None or pushed < count:
                if not outbox.offer(f"{pushed:08d}{CHUNK}"):
                    self.seen.crossed.append(loop.time())
                    self.seen.pushed.append(pushed)
                    self.seen.crossing.set()
                    break
                pushed += 1
                await asyncio.sleep(0)  # let the writer run: as fast as the client takes it
            while (await receive())["type"] != "websocket.disconnect":
                pass

    async def flood(self, receive: Receive, send: Send) -> None:
        """What most tutorials do: ``await send`` in a loop, no outbox. Ends when send raises."""
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        with contextlib.suppress(OSError):
            while True:
                await send({"type": "websocket.send", "text": CHUNK})
                self.seen.flooded += 1


async def start_host(app: DemoApp, ws: str) -> tuple[StartedUvicorn, str]:
    sock = bind_listener("127.0.0.1", 0)
    host, port = socket_address(sock)
    options = ServeOptions(ping_interval=None, max_size=2**16)
    started = await start_asgi_app(app, options, sock, ws=ws, close_timeout=CLOSE_TIMEOUT)
    app.started = started
    return started, f"ws://{host}:{port}"


@dataclass
class Hosted:
    app: DemoApp
    started: StartedUvicorn
    url: str


@pytest.fixture(params=IMPLEMENTATIONS)
async def hosted(request: pytest.FixtureRequest) -> AsyncIterator[Hosted]:
    """The test app on the host, with each uvicorn implementation; checks for leftovers."""
    if request.param == "wsproto" and importlib.util.find_spec("wsproto") is None:
        pytest.skip("wsproto is not installed (pip install wsproto)")
    before = asyncio.all_tasks()
    app = DemoApp()
    started, url = await start_host(app, request.param)
    try:
        yield Hosted(app, started, url)
    finally:
        await started.aclose()
    await asyncio.sleep(0)
    assert started.open_websockets == 0
    assert not started.host.connections
    leftover = {t for t in asyncio.all_tasks() - before - {asyncio.current_task()} if not t.done()}
    assert not leftover, leftover


async def until(condition: Callable[[], bool], timeout: float) -> None:
    """Poll ``condition`` (a state with no event to wait for) for ``timeout`` seconds at most."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


# -- 1001, not 1012 -------------------------------------------------------------


async def test_aclose_tells_clients_1001_before_uvicorn_could_say_1012(hosted: Hosted) -> None:
    async with connect(hosted.url + "/echo") as client:
        await client.send("hi")
        assert await asyncio.wait_for(client.recv(), 2) == "hi"
        await asyncio.wait_for(hosted.started.aclose(), 5)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(client.recv(), 2)
    assert client.close_code == 1001
    assert client.close_reason == "server shutting down"
    assert hosted.app.seen.open_at_lifespan_shutdown == [0]  # lifespan ran after, not before
    assert hosted.app.seen.app_sends_after_close == ["ConnectionClosedByHost"]


async def test_aclose_closes_many_clients_with_1001(hosted: Hosted) -> None:
    clients = [await connect(hosted.url + "/echo") for _ in range(20)]
    for client in clients:
        await client.send("ping")
        await asyncio.wait_for(client.recv(), 2)
    assert hosted.started.open_websockets == 20
    await asyncio.wait_for(hosted.started.aclose(), 5)
    for client in clients:
        await asyncio.wait_for(client.wait_closed(), 2)
        assert (client.close_code, client.close_reason) == (1001, "server shutting down")


@pytest.mark.parametrize("path", ["/flood", "/echo"])
async def test_aclose_aborts_a_stalled_client_within_the_close_timeout(
    hosted: Hosted, path: str
) -> None:
    """A client that stopped reading cannot answer the 1001: it is reset, and aclose ends.

    On /flood the app is stuck in ``await send`` behind a full buffer, and so is
    the host's close frame; on /echo the close frame goes out and is never answered.
    """
    stuck = await stalled_client(hosted.url + path)
    try:
        if path == "/flood":
            await until(lambda: hosted.app.seen.flooded > 0, 2)
            await asyncio.sleep(0.2)  # long enough to fill every buffer on the way
        async with connect(hosted.url + "/echo") as client:  # a healthy one beside it
            start = time.monotonic()
            await asyncio.wait_for(hosted.started.aclose(), CLOSE_TIMEOUT + 3)
            elapsed = time.monotonic() - start
        print(f"aclose with a client stalled on {path}: {elapsed * 1000:.0f} ms")
        assert elapsed < CLOSE_TIMEOUT + 1
        assert client.close_code == 1001
        assert not tcp_established(stuck)
    finally:
        stuck.transport.abort()


# -- refusals ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404])
async def test_refusals_are_real_http_responses_with_a_body(hosted: Hosted, status: int) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(hosted.url + f"/refuse/{status}")
    response = refused.value.response
    assert response.status_code == status
    assert response.body == f"refused with {status}: see the docs".encode()
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


async def test_unknown_path_is_404(hosted: Hosted) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(hosted.url + "/nowhere")
    assert refused.value.response.status_code == 404
    assert refused.value.response.body == b"no endpoint at /nowhere"


async def test_without_the_extension_a_refusal_is_a_403(hosted: Hosted) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(hosted.url + "/refuse-without-extension")
    assert refused.value.response.status_code == 403


async def test_refuse_wants_an_error_status() -> None:
    async def send(message: Message) -> None:
        raise AssertionError("nothing should be sent")

    with pytest.raises(ValueError, match="400-599"):
        await refuse({"type": "websocket", "extensions": {HTTP_RESPONSE: {}}}, send, 200, "ok")


# -- a reader that stopped reading ---------------------------------------------------


async def test_a_stalled_reader_is_dropped_within_the_close_timeout(hosted: Hosted) -> None:
    stuck = await stalled_client(hosted.url + "/stream")
    try:
        await asyncio.wait_for(hosted.app.seen.crossing.wait(), 5)
        crossed = hosted.app.seen.crossed[0]
        dropped = await wait_dropped(stuck, within=CLOSE_TIMEOUT + 2)
        elapsed = dropped - crossed
        print(f"dropped {elapsed * 1000:.0f} ms after the outbox crossed its limit")
        assert elapsed < CLOSE_TIMEOUT + 1
        assert hosted.app.seen.pushed[0] * len(CHUNK) > OUTBOX_LIMIT
        await until(lambda: hosted.started.open_websockets == 0, 2)  # the app call ended too
    finally:
        stuck.transport.abort()


async def test_a_client_that_reads_gets_every_message_in_order(hosted: Hosted) -> None:
    count = 100  # 800 KB, far over the outbox limit in total: it only bounds what waits
    async with connect(hosted.url + f"/stream?count={count}", max_size=None) as client:
        numbers = [int((await asyncio.wait_for(client.recv(), 2))[:8]) for _ in range(count)]
    assert numbers == list(range(count))
    assert client.close_code == 1000


async def test_the_host_offers_the_app_its_connection(hosted: Hosted) -> None:
    seen = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            seen.append(hosted_connection(scope))
        await hosted.app(scope, receive, send)

    hosted.started.host.app = app
    async with connect(hosted.url + "/echo") as client:
        await client.send("x")
        await client.recv()
    assert seen
    assert seen[0] is not None


def test_only_known_implementations() -> None:
    with socket.socket() as sock, pytest.raises(ValueError, match="websockets-sansio, wsproto"):
        asyncio.run(start_asgi_app(DemoApp(), ServeOptions(), sock, ws="websockets"))


@pytest.mark.parametrize("error", [OSError("peer gone"), RuntimeError("after websocket.close")])
async def test_the_hosts_close_is_harmless_when_the_connection_already_ended(
    error: Exception,
) -> None:
    """Without sockets: the server's ``send`` raises (ASGI 2.4 after a disconnect, or
    uvicorn after a close); the host's 1001 swallows that, and the app's later sends
    fail the ASGI way (an OSError) or, for its own close, do nothing."""
    accepted = asyncio.Event()
    release = asyncio.Event()
    outcome: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "websocket.accept"})
        accepted.set()
        await release.wait()
        await send({"type": "websocket.close", "code": 1000})  # a no-op now
        try:
            await send({"type": "websocket.send", "text": "late"})
        except OSError as exc:
            outcome.append(type(exc).__name__)

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    sent: list[str] = []

    async def send(message: Message) -> None:
        sent.append(message["type"])
        if message["type"] == "websocket.close":
            raise error

    host = HostMiddleware(app)
    call = asyncio.create_task(host({"type": "websocket", "extensions": {}}, receive, send))
    await asyncio.wait_for(accepted.wait(), 1)
    closing = asyncio.create_task(host.close_all(1001, "server shutting down", timeout=2))
    await asyncio.sleep(0.05)
    release.set()
    await asyncio.wait_for(closing, 2)
    await asyncio.wait_for(call, 1)
    assert sent == ["websocket.accept", "websocket.close"]
    assert outcome == ["ConnectionClosedByHost"]
    assert not host.connections
