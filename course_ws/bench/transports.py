"""``course-ws bench transports``: polling vs long-polling vs WebSocket, measured on loopback.

One small Starlette app publishes the same feed three ways, and three clients
read it at the same time, each counting every byte its socket sends and
receives:

* **polling** — ``GET /poll?since=N`` every ``poll_every`` seconds; the server
  answers at once, with the new messages or an empty list;
* **long-polling** — ``GET /longpoll?since=N``; the server holds the request
  until a message exists, answers, and the client asks again at once;
* **WebSocket** — one handshake, then the server pushes each message as a
  text frame on ``/ws``.

A producer in the server publishes ``count`` messages, one every ``interval``
seconds, each stamped with ``time.perf_counter()``. Server and clients share
one process (the server runs in a background thread), so the clocks agree and
latency is simply "received at" minus "published at".

Bytes are counted at the socket, headers included, for the steady state only:
TCP connection setup and the WebSocket handshake are one-time costs, reported
apart. TCP/IP headers (~50 bytes a packet) are not counted for anyone. Our HTTP
client sends a minimal request; a browser adds user agent, cookies and accept
headers, often 500 bytes more per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import statistics
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from course_ws.hosting.background import BackgroundServer, serve_in_background
from course_ws.rfc6455 import (
    FrameDecoder,
    HttpHeadReader,
    Opcode,
    build_close,
    build_request,
    check_response,
    encode_frame,
    generate_mask,
    parse_response,
)

__all__ = [
    "FULL",
    "QUICK",
    "CountingHttpClient",
    "Plan",
    "TransportResult",
    "TransportsReport",
    "run",
    "serve_feed",
    "transports_app",
]

TIMEOUT = 10.0
"""Seconds any single socket operation may block; nothing in a run waits forever."""

LONG_POLL_TIMEOUT = 10.0
"""How long the server holds a long-poll with nothing to send before answering ``[]``."""


@dataclass(frozen=True)
class Plan:
    """How many messages, how often, and how often the polling client asks."""

    count: int
    interval: float
    poll_every: float


QUICK = Plan(count=20, interval=0.1, poll_every=0.05)
"""About 2 s: for notebook 01 and the tests."""
FULL = Plan(count=100, interval=0.1, poll_every=0.05)
"""About 10 s: ``course-ws bench transports``."""


# -- the server: one feed, three ways to read it ----------------------------------


class Feed:
    """The messages published so far, in order; readers wait for new ones on a Condition.

    All three endpoints read this same list, so the only difference between
    them is the transport.
    """

    def __init__(self) -> None:
        self.messages: list[str] = []
        self._changed = asyncio.Condition()
        self._producers: set[asyncio.Task[None]] = set()

    async def wait_beyond(self, since: int, timeout: float | None = None) -> list[str]:
        """The messages from index ``since`` on, waiting up to ``timeout`` for one to exist."""
        async with self._changed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._changed.wait_for(lambda: len(self.messages) > since)
            return self.messages[since:]

    async def publish(self, message: str) -> None:
        async with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    async def produce(self, count: int, interval: float) -> None:
        """Publish ``count`` messages on a fixed schedule (no drift from slow iterations)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(count):
            await asyncio.sleep(max(0.0, start + n * interval - loop.time()))
            quote = f"EUR/USD {1.08 + (n % 50) / 10_000:.4f}"
            await self.publish(json.dumps({"id": n, "sent": time.perf_counter(), "quote": quote}))

    def start_producer(self, count: int, interval: float) -> None:
        task = asyncio.create_task(self.produce(count, interval))
        self._producers.add(task)
        task.add_done_callback(self._producers.discard)

    async def aclose(self) -> None:
        for task in list(self._producers):
            task.cancel()
        await asyncio.gather(*self._producers, return_exceptions=True)


def _json_list(messages: list[str]) -> Response:
    return Response("[" + ",".join(messages) + "]", media_type="application/json")


def transports_app() -> Starlette:
    """A fresh app (and feed): ``/poll``, ``/longpoll``, ``/ws``, and ``POST /publish``."""
    feed = Feed()

    async def poll(request: Request) -> Response:
        """Short polling: whatever is new, right now, even nothing."""
        since = int(request.query_params.get("since", "0"))
        return _json_list(feed.messages[since:])

    async def long_poll(request: Request) -> Response:
        """Long polling: hold the request until there is something new."""
        since = int(request.query_params.get("since", "0"))
        return _json_list(await feed.wait_beyond(since, LONG_POLL_TIMEOUT))

    async def publish(request: Request) -> Response:
        count = int(request.query_params["count"])
        interval = float(request.query_params["interval"])
        feed.start_producer(count, interval)
        return Response(status_code=202)

    async def subscribe(websocket: WebSocket) -> None:
        """WebSocket: push each message as it is published, until the client leaves."""
        await websocket.accept()
        since = int(websocket.query_params.get("since", "0"))

        async def push() -> None:
            nonlocal since
            while True:
                batch = await feed.wait_beyond(since)
                for message in batch:
                    await websocket.send_text(message)
                since += len(batch)

        pusher = asyncio.create_task(push())
        try:
            # Reading is how a server notices the client leaving (its close frame).
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass
        finally:
            pusher.cancel()
            await asyncio.gather(pusher, return_exceptions=True)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await feed.aclose()

    return Starlette(
        routes=[
            Route("/poll", poll),
            Route("/longpoll", long_poll),
            Route("/publish", publish, methods=["POST"]),
            WebSocketRoute("/ws", subscribe),
        ],
        lifespan=lifespan,
    )


def serve_feed() -> BackgroundServer:
    """Run :func:`transports_app` on uvicorn in the background."""
    return serve_in_background(transports_app())


# -- the clients: blocking sockets that count every byte ----------------------------


class CountingHttpClient:
    """A minimal HTTP/1.1 client on one keep-alive connection, counting bytes both ways.

    ``last_request`` and ``last_response`` keep the latest exchange exactly as
    it crossed the socket, for display.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=TIMEOUT)
        self.bytes_up = 0
        self.bytes_down = 0
        self.requests = 0
        self.last_request = b""
        self.last_response = b""

    def get(self, path: str) -> bytes:
        """Send ``GET path`` and return the body of a 200 response."""
        request = f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n\r\n".encode()
        self.sock.sendall(request)
        self.bytes_up += len(request)
        self.requests += 1
        reader = HttpHeadReader()
        received = bytearray()
        result = None
        while result is None:
            data = self._recv()
            received += data
            result = reader.feed(data)
        head, body = result
        response = parse_response(head)
        length = int(response.headers.get("content-length", "0"))
        while len(body) < length:
            data = self._recv()
            received += data
            body += data
        if response.status != 200:
            raise ConnectionError(f"GET {path}: {response.status} {response.reason}")
        self.last_request, self.last_response = request, bytes(received)
        return body

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.bytes_down += len(data)
        return data

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> CountingHttpClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class TransportResult:
    """What one client saw: a latency per message, and the bytes it cost."""

    name: str
    latencies: list[float] = field(default_factory=list)  # seconds, one per message
    bytes_up: int = 0  # client → server, steady state
    bytes_down: int = 0  # server → client, steady state
    requests: int = 0  # HTTP requests sent (WebSocket: 0)
    setup_bytes: int = 0  # one-time: the WebSocket handshake, both ways
    payload_bytes: int = 0  # the messages themselves (their JSON), whatever carried them

    @property
    def messages(self) -> int:
        return len(self.latencies)

    @property
    def bytes_per_message(self) -> float:
        return (self.bytes_up + self.bytes_down) / self.messages

    @property
    def payload_per_message(self) -> float:
        return self.payload_bytes / self.messages

    @property
    def latencies_ms(self) -> list[float]:
        return [seconds * 1000 for seconds in self.latencies]

    def count_traffic(self, client: CountingHttpClient) -> None:
        """Take the bytes and requests an HTTP client counted."""
        self.bytes_up, self.bytes_down = client.bytes_up, client.bytes_down
        self.requests = client.requests

    def receive(self, batch: list[dict[str, float]]) -> None:
        """Record the latency of each message of a batch that just arrived."""
        now = time.perf_counter()
        self.latencies.extend(now - message["sent"] for message in batch)
        # json.dumps gives back the exact text the server published.
        self.payload_bytes += sum(len(json.dumps(message)) for message in batch)


def poll_client(host: str, port: int, plan: Plan, ready: threading.Barrier) -> TransportResult:
    """Ask every ``plan.poll_every`` seconds, whether or not anything happened."""
    result = TransportResult("polling")
    with CountingHttpClient(host, port) as client:
        ready.wait()
        while result.messages < plan.count:
            result.receive(json.loads(client.get(f"/poll?since={result.messages}")))
            if result.messages < plan.count:
                time.sleep(plan.poll_every)
        result.count_traffic(client)
    return result


def long_poll_client(host: str, port: int, plan: Plan, ready: threading.Barrier) -> TransportResult:
    """Ask again as soon as an answer arrives; the server answers when it has news."""
    result = TransportResult("long-polling")
    with CountingHttpClient(host, port) as client:
        ready.wait()
        while result.messages < plan.count:
            result.receive(json.loads(client.get(f"/longpoll?since={result.messages}")))
        result.count_traffic(client)
    return result


def websocket_client(host: str, port: int, plan: Plan, ready: threading.Barrier) -> TransportResult:
    """One handshake, then frames pushed by the server: decoded with course_ws.rfc6455."""
    result = TransportResult("WebSocket")
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        request, key = build_request(f"{host}:{port}", "/ws")
        sock.sendall(request)
        reader = HttpHeadReader()
        handshake = None
        while handshake is None:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection during the handshake")
            handshake = reader.feed(data)
        head, data = handshake
        check_response(head, key)
        result.setup_bytes = len(request) + len(head)
        decoder = FrameDecoder(role="client", max_size=None)
        ready.wait()
        while result.messages < plan.count:
            result.bytes_down += len(data)
            for frame in decoder.feed(data):
                if frame.opcode is Opcode.TEXT:
                    result.receive([json.loads(frame.payload)])
                elif frame.opcode is Opcode.PING:
                    pong = encode_frame(Opcode.PONG, frame.payload, mask=generate_mask())
                    sock.sendall(pong)
                    result.bytes_up += len(pong)
            if result.messages < plan.count:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("the server closed the connection")
        # Say goodbye properly (not counted: the polling clients' FIN isn't either).
        sock.sendall(encode_frame(Opcode.CLOSE, build_close(1000), mask=generate_mask()))
        with contextlib.suppress(OSError):
            while sock.recv(65536):
                pass
    return result


Client = Callable[[str, int, Plan, threading.Barrier], TransportResult]
CLIENTS: tuple[Client, ...] = (poll_client, long_poll_client, websocket_client)


# -- running the experiment ---------------------------------------------------------


@dataclass(frozen=True)
class TransportsReport:
    """The three results of one run; ``str()`` is a table."""

    plan: Plan
    results: tuple[TransportResult, ...]
    quick: bool

    def __getitem__(self, name: str) -> TransportResult:
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(name)

    def __str__(self) -> str:
        plan = self.plan
        lines = [
            f"course-ws bench transports ({'quick' if self.quick else 'full'} run): "
            f"{plan.count} messages, one every {plan.interval * 1000:g} ms, on loopback",
            f"polling asks every {plan.poll_every * 1000:g} ms; long-polling asks again "
            "after each answer; WebSocket is pushed to",
            "",
            f"{'transport':<14}{'requests':>9}{'bytes up':>10}{'bytes down':>12}"
            f"{'bytes/msg':>11}{'latency median':>16}{'p95':>10}{'max':>10}",
        ]
        for result in self.results:
            ms = sorted(result.latencies_ms)
            p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
            lines.append(
                f"{result.name:<14}{result.requests:>9}{result.bytes_up:>10,}"
                f"{result.bytes_down:>12,}{result.bytes_per_message:>11.0f}"
                f"{statistics.median(ms):>13.1f} ms{p95:>7.1f} ms{ms[-1]:>7.1f} ms"
            )
        handshake = self["WebSocket"].setup_bytes
        payload = self.results[0].payload_per_message
        lines += [
            "",
            f"each message itself is {payload:.0f} bytes of JSON on average",
            f"plus, once per WebSocket connection: a {handshake}-byte handshake",
        ]
        return "\n".join(lines)


def run(*, quick: bool = False, plan: Plan | None = None) -> TransportsReport:
    """Serve the feed, read it three ways at once, and return what each client measured.

    The clients run in threads (blocking sockets: the code reads top to bottom)
    and wait at a barrier until all are connected; only then does the producer
    start, so that no client misses the beginning.
    """
    plan = plan or (QUICK if quick else FULL)
    deadline = plan.count * max(plan.interval, plan.poll_every) + TIMEOUT
    with serve_feed() as server:
        ready = threading.Barrier(len(CLIENTS) + 1, timeout=TIMEOUT)
        with ThreadPoolExecutor(len(CLIENTS), thread_name_prefix="bench-client") as pool:
            futures = [
                pool.submit(client, server.host, server.port, plan, ready) for client in CLIENTS
            ]
            try:
                ready.wait()
            except threading.BrokenBarrierError:
                # A client failed before it was ready: its own error says why.
                for future in futures:
                    if future.done() and (error := future.exception()) is not None:
                        raise error from None
                raise
            connection = http.client.HTTPConnection(server.host, server.port, timeout=TIMEOUT)
            try:
                connection.request("POST", f"/publish?count={plan.count}&interval={plan.interval}")
                connection.getresponse().read()
            finally:
                connection.close()
            results = tuple(future.result(timeout=deadline) for future in futures)
    return TransportsReport(plan, results, quick)
