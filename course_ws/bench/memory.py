"""``course-ws bench memory``: what one idle WebSocket connection costs a server.

Each configuration runs in a fresh server process (so memory freed by one
cannot be reused by the next), which reports its resident memory (RSS) before
and after ``N`` clients (in other processes) have connected and gone idle.
The difference divided by ``N`` is the cost of a connection: the connection
objects, the handler's task and frame, the buffers the library keeps, and, with
permessage-deflate, the zlib state of both directions.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import os
import platform
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

from course_ws.bench import ONE_ADDRESS_CROWD
from course_ws.bench.crowd import Crowd
from course_ws.hosting.listening import bind_listener, socket_address
from course_ws.options import ServeOptions
from course_ws.servers import chat

DEFLATE = "websockets defaults (deflate on)"
CONFIGS: dict[str, dict[str, Any]] = {
    DEFLATE: {},
    "compression off": {"compression": None},
    "compression off, small buffers": {
        "compression": None,
        "max_queue": 4,
        "write_limit": 4096,
    },
}
"""``serve()`` settings measured with a handler that only waits; plus the chat server below."""
CHAT = "chat server as shipped (compression off)"
ROOM_SIZE = 100


def resident_bytes() -> int:
    """This process's resident memory, from /proc (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _idle(websocket: ServerConnection) -> None:
    await websocket.wait_closed()


def _closer(server: Server) -> Callable[[], Awaitable[None]]:
    async def close() -> None:
        server.close()
        await server.wait_closed()

    return close


async def _server(pipe: Connection, config: str) -> None:
    sock = bind_listener("127.0.0.1", 0)
    host, port = socket_address(sock)
    stop: Callable[[], Awaitable[None]]
    if config == CHAT:
        running = await chat.start(ServeOptions(**ONE_ADDRESS_CROWD, ping_interval=None), sock)
        server = running.server
        stop = running.aclose
    else:
        server = await serve(_idle, sock=sock, ping_interval=None, **CONFIGS[config])
        stop = _closer(server)
    gc.collect()
    pipe.send((host, port, resident_bytes()))
    expected = await asyncio.to_thread(pipe.recv)  # sent once every client's handshake is done
    await asyncio.sleep(0.5)  # let the last connections settle into idle
    gc.collect()
    if len(server.connections) != expected:
        raise RuntimeError(f"expected {expected} connections, have {len(server.connections)}")
    pipe.send(resident_bytes())
    await asyncio.to_thread(pipe.recv)  # the clients have gone
    await stop()


def _server_main(pipe: Connection, config: str) -> None:
    asyncio.run(_server(pipe, config))


@dataclass
class MemoryReport:
    """Bytes per idle connection for each configuration."""

    quick: bool
    connections: int
    per_connection: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        width = max(len(name) for name in self.per_connection)
        lines = [
            "course-ws bench memory" + (" --quick" if self.quick else ""),
            f"Python {platform.python_version()}, websockets {version('websockets')}; "
            f"{self.connections:,} idle connections per configuration, server RSS growth",
            "",
            f"{'configuration':<{width}}  KiB per connection",
            f"{'-' * width}  ------------------",
        ]
        for name, size in self.per_connection.items():
            lines.append(f"{name:<{width}}  {size / 1024:18.1f}")
        return "\n".join(lines)


async def _measure(config: str, connections: int) -> float:
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_server_main, args=(child, config), daemon=True)
    process.start()
    try:
        host, port, before = await asyncio.to_thread(parent.recv)
        before = int(before)
        if config == CHAT:
            urls = [
                f"ws://{host}:{port}/chat/r{n % (connections // ROOM_SIZE or 1)}?user=u{n}"
                for n in range(connections)
            ]
        else:
            urls = [f"ws://{host}:{port}/"] * connections
        crowd = Crowd(urls, compress=config == DEFLATE)
        try:
            await crowd.start()
            parent.send(connections)
            after = int(await asyncio.to_thread(parent.recv))
        finally:
            await crowd.close()  # clients leave first, so the server writes to no dead socket
            parent.send("stop")
    finally:
        await asyncio.to_thread(process.join, 30)
        if process.is_alive():
            process.kill()
    return (after - before) / connections


async def measure(connections: int, *, quick: bool = False) -> MemoryReport:
    """Bytes per idle connection in every configuration, with ``connections`` clients."""
    report = MemoryReport(quick, connections)
    for config in [*CONFIGS, CHAT]:
        report.per_connection[config] = await _measure(config, connections)
    return report


def run(*, quick: bool = False) -> MemoryReport:
    """Measure every configuration (``quick``: 500 connections each) and return the report."""
    return asyncio.run(measure(500 if quick else 10_000, quick=quick))
