"""A crowd of WebSocket clients in child processes, for benchmarks.

The server under test runs in the benchmark's own process; its clients must
not, or they would share its CPU and its memory figures. A :class:`Crowd`
spawns child processes that open the connections, optionally keep one of them
*stalled* (it stops reading, with a small receive buffer), optionally keep a
*publisher* connection that sends chat ``say`` messages on request, and record
how long each message took to arrive: every message carries the time it was
sent, in its JSON (``{"sent": t}``) or, for chat events, in its text, and
optionally a ``kind``, so that one run can time several sorts of message apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from course_ws.lab.fanout import stalled_client

CONNECT_CONCURRENCY = 100
"""Handshakes in flight per process: enough to be quick, few enough for the listen backlog."""
STALLED_RCVBUF = 4096


def timing(frame: str | bytes) -> tuple[str, float] | None:
    """The kind and send time a benchmark message carries, if it carries them."""
    try:
        data = json.loads(frame)
        if data.get("type") == "message":
            data = json.loads(data["text"])
        return str(data.get("kind", "message")), float(data["sent"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


@dataclass
class _Child:
    """The state of one child process."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    received: int = 0
    target: int = 0
    enough: asyncio.Event = field(default_factory=asyncio.Event)
    listeners: list[ClientConnection] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def wait_for(self, count: int, timeout: float) -> None:
        """Wait until ``count`` timed messages have arrived, or ``timeout`` seconds."""
        self.target = count
        self.enough.clear()
        if self.received < count:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.enough.wait()

    async def listen(self, websocket: ClientConnection) -> None:
        with contextlib.suppress(Exception):
            async for frame in websocket:
                timed = timing(frame)
                if timed is not None:
                    kind, sent = timed
                    self.latencies.setdefault(kind, []).append(time.time() - sent)
                    self.received += 1
                    if self.received >= self.target:
                        self.enough.set()


async def _open(url: str, semaphore: asyncio.Semaphore, compress: bool = False) -> ClientConnection:
    async with semaphore:
        return await connect(
            url,
            compression="deflate" if compress else None,
            ping_interval=None,
            open_timeout=60,
        )


async def _child(
    pipe: Connection, urls: list[str], stalled: str | None, publisher: str | None, compress: bool
) -> None:
    child = _Child()
    semaphore = asyncio.Semaphore(CONNECT_CONCURRENCY)
    openings = (_open(url, semaphore, compress) for url in urls)
    child.listeners = list(await asyncio.gather(*openings))
    child.tasks = [asyncio.create_task(child.listen(ws)) for ws in child.listeners]
    stuck = await stalled_client(stalled, receive_buffer=STALLED_RCVBUF) if stalled else None
    talker = await _open(publisher, semaphore) if publisher else None
    pipe.send(("ready", len(child.listeners)))
    while True:
        command, *args = await asyncio.to_thread(pipe.recv)
        if command == "say" and talker is not None:
            count, interval = args
            for n in range(count):
                text = json.dumps({"sent": time.time(), "n": n, "kind": "chat"})
                await talker.send(json.dumps({"type": "say", "text": text}))
                await asyncio.sleep(interval)
            pipe.send(("said", count))
        elif command == "collect":
            expected, timeout = args
            await child.wait_for(expected, timeout)
            pipe.send(("latencies", child.latencies))
            child.latencies, child.received = {}, 0
        elif command == "exit":
            for websocket in [*child.listeners, *filter(None, (stuck, talker))]:
                websocket.transport.abort()
            pipe.send(("bye",))
            return


def _child_main(
    pipe: Connection, urls: list[str], stalled: str | None, publisher: str | None, compress: bool
) -> None:
    asyncio.run(_child(pipe, urls, stalled, publisher, compress))


class Crowd:
    """``urls`` opened by ``processes`` child processes; a stalled client and a publisher
    (both in the first child) when their URLs are given. ``compress`` offers
    permessage-deflate (off by default: it costs the clients memory and CPU)."""

    def __init__(
        self,
        urls: list[str],
        *,
        processes: int = 2,
        stalled: str | None = None,
        publisher: str | None = None,
        compress: bool = False,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        for index in range(processes):
            parent, child = context.Pipe()
            share = urls[index::processes]
            extra = (stalled, publisher) if index == 0 else (None, None)
            process = context.Process(
                target=_child_main, args=(child, share, *extra, compress), daemon=True
            )
            self.pipes.append(parent)
            self.processes.append(process)

    async def _ask(self, index: int, message: tuple[Any, ...], timeout: float) -> Any:
        """Send ``message`` (if any) to child ``index`` and wait for its answer."""
        pipe, process = self.pipes[index], self.processes[index]
        if message:
            pipe.send(message)
        ready = await asyncio.to_thread(wait, [pipe, process.sentinel], timeout)
        if pipe in ready:
            return pipe.recv()
        if process.sentinel in ready:
            raise RuntimeError(f"client process {index} died (exit code {process.exitcode})")
        raise TimeoutError(f"client process {index} did not answer {message[:1]} in {timeout:g} s")

    async def start(self, timeout: float = 120) -> int:
        """Start the children; return once every connection is open (their count)."""
        for process in self.processes:
            process.start()
        answers = await asyncio.gather(*(self._ask(i, (), timeout) for i in range(len(self.pipes))))
        return sum(count for _, count in answers)

    async def say(self, count: int, interval: float, timeout: float = 60) -> None:
        """Have the publisher send ``count`` chat messages, ``interval`` seconds apart."""
        await self._ask(0, ("say", count, interval), timeout)

    async def collect(
        self, expected_per_client: int, clients: int, timeout: float
    ) -> dict[str, list[float]]:
        """Latencies (seconds) of the messages received since the last collect, by kind."""
        answers = await asyncio.gather(
            *(
                self._ask(
                    index, ("collect", expected_per_client * len(share), timeout), timeout + 30
                )
                for index, share in enumerate(self._shares(clients))
            )
        )
        merged: dict[str, list[float]] = {}
        for _, latencies in answers:
            for kind, values in latencies.items():
                merged.setdefault(kind, []).extend(values)
        return merged

    def _shares(self, clients: int) -> list[range]:
        return [range(index, clients, len(self.pipes)) for index in range(len(self.pipes))]

    async def close(self) -> None:
        """Abort every connection and end the children."""
        for index in range(len(self.pipes)):
            with contextlib.suppress(OSError, TimeoutError, EOFError, RuntimeError):
                await self._ask(index, ("exit",), 30)
        for process in self.processes:
            await asyncio.to_thread(process.join, 30)
            if process.is_alive():
                process.kill()
