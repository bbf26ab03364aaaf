"""A fan-out experiment small enough for a notebook: N listeners, one of them stalled.

Everything runs on the caller's event loop (``await run_fanout(...)`` in a cell):
a server using one :mod:`course_ws.fanout.strategies` strategy, ``clients`` healthy
listeners that record how long each message took to reach them, and optionally
one client that stops reading. Socket buffers are shrunk on purpose, so the
stalled client fills up after a few messages instead of a few megabytes.

The benchmark (``course-ws bench fanout``) measures the same with clients in
other processes and thousands of connections; this one shows the shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from course_ws.fanout.strategies import Fanout
from course_ws.fanout.strategies import logger as fanout_logger

SMALL_BUFFER = 8 * 1024
"""SO_SNDBUF/SO_RCVBUF for the experiment's sockets: a stalled client fills up quickly."""


@dataclass
class FanoutResult:
    """What one run measured, for the healthy clients and for the server."""

    strategy: str
    clients: int
    messages: int
    stalled: bool
    latencies: list[float] = field(default_factory=list)
    """Seconds from publish to receipt, for every message a healthy client received."""
    backlog: int = 0
    """Bytes the server still held for clients when publishing ended."""
    stalled_close: int | None = None
    """The close code the stalled client got, if the server closed it."""
    log: list[str] = field(default_factory=list)
    """What the strategy logged (a warning for each client it dropped)."""

    @property
    def delivered(self) -> float:
        """The share of (healthy client, message) pairs delivered before the deadline."""
        return len(self.latencies) / (self.clients * self.messages)

    def percentile(self, p: float) -> float:
        """The ``p``-th percentile of the latencies in seconds, over every message that should
        have arrived: one that never did counts as infinitely late (``inf``)."""
        return latency_percentile(self.latencies, p, self.clients * self.messages)

    def __str__(self) -> str:
        stall = "with a stalled client" if self.stalled else "all clients reading"
        return (
            f"{self.strategy:>15} ({stall}): delivered {self.delivered:.0%}, "
            f"p50 {show_ms(self.percentile(50))}, p99 {show_ms(self.percentile(99))}, "
            f"server backlog {self.backlog / 1024:.0f} KiB"
        )


def latency_percentile(latencies: list[float], p: float, expected: int) -> float:
    """The ``p``-th percentile of ``expected`` deliveries, of which ``latencies`` arrived.

    Leaving out what never arrived would make a stuck server look fast: its few
    deliveries were quick. Counted as infinitely late, they show as ``inf``.
    """
    if expected <= 0:
        return float("nan")
    ordered = sorted(latencies)
    rank = max(0, math.ceil(p / 100 * expected) - 1)
    return ordered[rank] if rank < len(ordered) else math.inf


def show_ms(seconds: float) -> str:
    """``12.3 ms``, or ``never`` for an infinite latency."""
    return "never" if math.isinf(seconds) else f"{seconds * 1000:.1f} ms"


def shrink_send_buffer(websocket: ServerConnection, size: int = SMALL_BUFFER) -> None:
    """Give the server's side of ``websocket`` a small kernel send buffer (SO_SNDBUF)."""
    sock = websocket.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


async def stalled_client(url: str, *, receive_buffer: int = SMALL_BUFFER) -> ClientConnection:
    """Connect to ``url`` with a small receive buffer, then stop reading: a stuck client."""
    parts = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
    websocket = await connect(url, sock=sock, compression=None, ping_interval=None)
    websocket.transport.pause_reading()  # stop reading: its buffers fill up
    return websocket


async def _close_code(websocket: ClientConnection, deadline: float) -> int | None:
    """Read what the server queued for a stalled client until it closes; its close code."""
    websocket.transport.resume_reading()
    try:
        async with asyncio.timeout(deadline):
            async for _ in websocket:
                pass
    except (TimeoutError, ConnectionClosed):
        pass
    return websocket.close_code


class _Captured(logging.Handler):
    """Collect the strategies' log lines into a list while an experiment runs."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.INFO)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def _listen(websocket: ClientConnection, latencies: list[float], expected: int) -> None:
    received = 0
    try:
        while received < expected:
            message = json.loads(await websocket.recv())
            latencies.append(time.perf_counter() - message["sent"])
            received += 1
    except ConnectionClosed:
        pass


async def run_fanout(
    strategy: Fanout,
    *,
    clients: int = 50,
    messages: int = 50,
    size: int = 8 * 1024,
    interval: float = 0.005,
    stalled: bool = True,
    deadline: float = 2.0,
) -> FanoutResult:
    """Publish ``messages`` of ``size`` bytes every ``interval`` s to ``clients`` listeners.

    Healthy clients that have not received everything ``deadline`` seconds after
    the last publish are counted as not delivered.
    """
    result = FanoutResult(strategy.name, clients, messages, stalled)
    everyone = clients + stalled
    registered = asyncio.Event()

    async def handler(websocket: ServerConnection) -> None:
        shrink_send_buffer(websocket)
        if len(strategy.clients) + 1 == everyone:
            registered.set()  # strategy.handler registers it before its first await
        await strategy.handler(websocket)

    captured = _Captured(result.log)
    propagate = fanout_logger.propagate
    fanout_logger.addHandler(captured)
    fanout_logger.propagate = False
    try:
        async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
            host, port = server.sockets[0].getsockname()[:2]
            await _experiment(
                strategy,
                result,
                f"ws://{host}:{port}",
                registered,
                size=size,
                interval=interval,
                deadline=deadline,
            )
    finally:
        fanout_logger.removeHandler(captured)
        fanout_logger.propagate = propagate
    return result


async def _experiment(
    strategy: Fanout,
    result: FanoutResult,
    url: str,
    registered: asyncio.Event,
    *,
    size: int,
    interval: float,
    deadline: float,
) -> None:
    listeners = [
        await connect(url, compression=None, ping_interval=None) for _ in range(result.clients)
    ]
    stuck = await stalled_client(url) if result.stalled else None
    async with asyncio.timeout(deadline):
        await registered.wait()
    listening = [
        asyncio.create_task(_listen(listener, result.latencies, result.messages))
        for listener in listeners
    ]
    padding = "x" * size
    for n in range(result.messages):
        body = json.dumps({"n": n, "sent": time.perf_counter(), "padding": padding})
        try:
            async with asyncio.timeout(deadline):
                await strategy.publish(body)
        except TimeoutError:
            break  # this strategy is stuck: the rest counts as not delivered
        await asyncio.sleep(interval)
    result.backlog = strategy.backlog()
    _, late = await asyncio.wait(listening, timeout=deadline)
    for task in late:
        task.cancel()
    if stuck is not None:
        result.stalled_close = await _close_code(stuck, deadline)
        stuck.transport.abort()
    for listener in listeners:
        listener.transport.abort()
