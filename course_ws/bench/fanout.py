"""``course-ws bench fanout``: one message to thousands of WebSockets.

Two questions, measured with the server in this process and its clients in two
child processes (:mod:`course_ws.bench.crowd`):

1. **Strategies** (:mod:`course_ws.fanout.strategies`): for each, with every client reading
   and with one client stalled (it stopped reading long ago and has 512 KiB
   waiting), how long messages take to reach the healthy clients (p50/p99 of
   send → receipt), how many arrive, and what the server holds for clients.
2. **The chat server**: its own fan-out time, from receiving a ``say`` to the
   last write handed to the transports (``ChatServer.observe_publish``), next
   to bare ``websockets.broadcast()`` to the same members in the same run, with
   and without a stalled member; and the end-to-end delivery p50/p99.

Timings depend on the machine and on what else it is doing: compare rows of one
run, not runs of different machines.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass, field
from importlib.metadata import version

from websockets.asyncio.server import ServerConnection, broadcast, serve

from course_ws.bench import ONE_ADDRESS_CROWD
from course_ws.bench.crowd import Crowd
from course_ws.fanout.strategies import SLOW_CLIENT_BUFFER, STRATEGIES, Fanout
from course_ws.fanout.strategies import logger as fanout_logger
from course_ws.hosting.listening import bind_listener, socket_address
from course_ws.lab.fanout import latency_percentile, shrink_send_buffer
from course_ws.options import ServeOptions
from course_ws.rfc6455 import Opcode, encode_frame
from course_ws.servers import chat

STALL_PREFILL = 2 * SLOW_CLIENT_BUFFER
"""Bytes queued for the stalled client before measuring: past every strategy's limit."""
SMALL_SNDBUF = 16 * 1024


@dataclass(frozen=True)
class Settings:
    """How big a run is."""

    sizes: tuple[int, ...]
    messages: int
    interval: float
    payload: int
    deadline: float


QUICK = Settings(sizes=(200,), messages=5, interval=0.05, payload=200, deadline=2.0)
FULL = Settings(sizes=(1_000, 10_000), messages=20, interval=0.2, payload=200, deadline=10.0)


def ms(seconds: float) -> str:
    """Milliseconds with one decimal; ``never`` for a message that did not arrive."""
    if math.isnan(seconds):
        return "-"
    return "never" if math.isinf(seconds) else f"{seconds * 1000:.1f}"


def p(values: list[float], rank: int) -> float:
    """The ``rank``-th percentile of measurements that all completed."""
    return latency_percentile(values, rank, len(values))


@dataclass
class StrategyRow:
    """One strategy, one crowd size, stalled client or not."""

    strategy: str
    clients: int
    stalled: bool
    latencies: list[float]
    expected: int
    backlog: int
    stuck: bool
    dropped: int

    def cells(self) -> list[str]:
        delivered = len(self.latencies) / self.expected if self.expected else 0
        return [
            f"{self.clients:,}",
            self.strategy,
            "yes" if self.stalled else "no",
            f"{delivered:.0%}" + (" (stuck)" if self.stuck else ""),
            ms(latency_percentile(self.latencies, 50, self.expected)),
            ms(latency_percentile(self.latencies, 99, self.expected)),
            f"{self.backlog / 1024:,.0f}",
            str(self.dropped),
        ]


@dataclass
class ChatRow:
    """The chat server at one crowd size, stalled member or not."""

    clients: int
    stalled: bool
    chat_fanout: list[float]
    """Receiving a say -> its last write handed to the transports (ChatServer.observe_publish)."""
    bare_broadcast: list[float]
    """``websockets.broadcast(members, event)``."""
    write_only: list[float]
    """The floor: one frame, built once, written to every member's transport."""
    latencies: list[float]
    """Send -> receipt for the chat messages, at every member."""

    @property
    def ratio(self) -> float:
        return p(self.chat_fanout, 50) / p(self.bare_broadcast, 50)

    def cells(self) -> list[str]:
        return [
            f"{self.clients:,}",
            "yes" if self.stalled else "no",
            ms(p(self.chat_fanout, 50)),
            ms(max(self.chat_fanout, default=math.nan)),
            ms(p(self.bare_broadcast, 50)),
            ms(p(self.write_only, 50)),
            f"{self.ratio:.2f}",
            ms(latency_percentile(self.latencies, 50, self.clients * len(self.chat_fanout))),
            ms(latency_percentile(self.latencies, 99, self.clients * len(self.chat_fanout))),
        ]


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
        for line in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


@dataclass
class FanoutReport:
    """Everything one run measured."""

    quick: bool
    settings: Settings
    strategies: list[StrategyRow] = field(default_factory=list)
    chat: list[ChatRow] = field(default_factory=list)

    def __str__(self) -> str:
        s = self.settings
        lines = [
            "course-ws bench fanout" + (" --quick" if self.quick else ""),
            f"Python {platform.python_version()}, websockets {version('websockets')}, "
            f"{os.cpu_count()} CPUs; {s.messages} messages of ~{s.payload} B, "
            f"{s.interval * 1000:.0f} ms apart; clients in 2 other processes",
            "",
            "Strategies: delivery to the healthy clients (ms, send -> receipt), what the server",
            "holds for clients after the last message (KiB), and how many clients it closed",
            f"as too slow (1013). The stalled client had {STALL_PREFILL // 1024} KiB waiting "
            "before the first message.",
            table(
                ["clients", "strategy", "stalled", "delivered", "p50", "p99", "backlog", "dropped"],
                [row.cells() for row in self.strategies],
            ),
            "",
            "The chat server: its fan-out time (receiving a say -> last write handed to the",
            "transports), bare broadcast() to the same members, and the floor: one frame built",
            "once and written to each member's transport (ms); ratio = chat / broadcast p50;",
            "delivery of the chat messages, send -> receipt (ms).",
            table(
                [
                    "clients",
                    "stalled",
                    "chat p50",
                    "chat max",
                    "broadcast p50",
                    "write-only p50",
                    "ratio",
                    "delivery p50",
                    "delivery p99",
                ],
                [row.cells() for row in self.chat],
            ),
        ]
        return "\n".join(lines)


def _prefill(websocket: ServerConnection) -> None:
    """Queue ``STALL_PREFILL`` bytes for a client that does not read."""
    filler = json.dumps({"filler": "x" * 65_000})
    for _ in range(STALL_PREFILL // len(filler) + 1):
        broadcast([websocket], filler)


def _event(kind: str) -> str:
    """A chat message event carrying its kind and send time, as the crowd expects."""
    text = json.dumps({"sent": time.time(), "kind": kind})
    return json.dumps({"type": "message", "text": text})


def _path(connection: ServerConnection) -> str:
    """The request target a connection opened with."""
    return connection.request.path if connection.request is not None else ""


def _payload(size: int) -> str:
    return json.dumps({"sent": time.time(), "pad": "x" * size})


async def _strategy_case(name: str, clients: int, stalled: bool, s: Settings) -> StrategyRow:
    strategy: Fanout = STRATEGIES[name]()
    stuck_client: list[ServerConnection] = []

    async def handler(websocket: ServerConnection) -> None:
        if _path(websocket).endswith("?stalled"):
            shrink_send_buffer(websocket, SMALL_SNDBUF)
            stuck_client.append(websocket)
        await strategy.handler(websocket)

    sock = bind_listener("127.0.0.1", 0)
    host, port = socket_address(sock)
    url = f"ws://{host}:{port}/fanout"
    async with serve(handler, sock=sock, compression=None, ping_interval=None):
        crowd = Crowd([url] * clients, stalled=f"{url}?stalled" if stalled else None)
        try:
            await crowd.start()
            for websocket in stuck_client:
                _prefill(websocket)
            stuck = False
            sent = 0
            for _ in range(s.messages):
                try:
                    async with asyncio.timeout(s.deadline):
                        await strategy.publish(_payload(s.payload))
                except TimeoutError:
                    stuck = True
                    break
                sent += 1
                await asyncio.sleep(s.interval)
            backlog = strategy.backlog()
            latencies = (await crowd.collect(sent, clients, s.deadline)).get("message", [])
        finally:
            await crowd.close()
    return StrategyRow(
        name, clients, stalled, latencies, clients * s.messages, backlog, stuck, strategy.dropped
    )


async def _chat_case(clients: int, stalled: bool, s: Settings) -> ChatRow:
    options = ServeOptions(**ONE_ADDRESS_CROWD, ping_interval=None)
    chat_fanout: list[float] = []
    sock = bind_listener("127.0.0.1", 0)
    host, port = socket_address(sock)
    base = f"ws://{host}:{port}/chat/bench"
    running = await chat.start(options, sock, observe_publish=chat_fanout.append)
    crowd = Crowd(
        [f"{base}?user=c{n}" for n in range(clients)],
        stalled=f"{base}?user=stalled" if stalled else None,
        publisher=f"{base}?user=publisher",
    )
    try:
        await crowd.start()
        members = [c for c in running.server.connections if "user=c" in _path(c)]
        for websocket in running.server.connections:
            if _path(websocket).endswith("user=stalled"):
                shrink_send_buffer(websocket, SMALL_SNDBUF)
                _prefill(websocket)
        bare: list[float] = []
        floor: list[float] = []
        for _ in range(s.messages):  # interleaved, so that all three meet the same load
            await crowd.say(1, 0)
            await asyncio.sleep(s.interval)
            started = time.perf_counter()
            broadcast(members, _event("bare"))
            bare.append(time.perf_counter() - started)
            await asyncio.sleep(s.interval)
            started = time.perf_counter()
            frame = encode_frame(Opcode.TEXT, _event("floor").encode())
            for member in members:
                member.transport.write(frame)
            floor.append(time.perf_counter() - started)
            await asyncio.sleep(s.interval)
        latencies = (await crowd.collect(3 * s.messages, clients, s.deadline)).get("chat", [])
    finally:
        await crowd.close()
        await running.aclose()
    return ChatRow(clients, stalled, chat_fanout, bare, floor, latencies)


async def measure(settings: Settings, *, quick: bool = False) -> FanoutReport:
    """Measure every strategy and the chat server at each of ``settings.sizes``."""
    report = FanoutReport(quick, settings)
    for clients in settings.sizes:
        for stalled in (False, True):
            for name in STRATEGIES:
                report.strategies.append(await _strategy_case(name, clients, stalled, settings))
            report.chat.append(await _chat_case(clients, stalled, settings))
    return report


def run(*, quick: bool = False) -> FanoutReport:
    """Run the benchmark (``quick``: 200 clients, a few seconds) and return its report.

    Dropping the stalled client is counted in the report, so its warning is not logged.
    """
    quiet = fanout_logger
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return asyncio.run(measure(QUICK if quick else FULL, quick=quick))
    finally:
        quiet.setLevel(level)
