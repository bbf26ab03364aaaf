"""``course-ws bench echo``: round trips per second, and the server CPU each one costs.

The course's ``echo`` server should cost no more than the ten lines of
``websockets`` a tutorial writes (:data:`BARE_SERVER`): production habits
(limits, a 404 for unknown paths, a send deadline) are paid once per
connection, not once per message. This benchmark checks that claim against
the other servers that echo on the same loopback:

* **bare websockets** — :data:`BARE_SERVER`, ``serve()`` with every default;
* **course-ws echo** — ``course-ws serve echo``;
* **chat /echo** — ``course-ws serve chat``, its ``/echo`` endpoint;
* **raw** — ``course-ws serve raw``, no WebSocket library.

Each server runs in its own process, started as a learner would start it. The
load comes from another process: ``clients`` connections, each a closed loop
(send one text message, wait for its echo, send the next). Those clients speak
the protocol with :mod:`course_ws.rfc6455` on plain asyncio streams, one
pre-built masked frame each, so that they cost far less than the servers and
the servers are what is measured. The server's CPU time (user + system, from
``/proc``) over a run, divided by its round trips, is the CPU per round trip.

Runs are interleaved (every server once per round, in a rotating order) and
the report keeps each server's median, so that a burst of load from elsewhere
on the machine hits every server alike instead of one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib.metadata import version
from multiprocessing.connection import Connection

from course_ws.load import system
from course_ws.rfc6455 import (
    HttpHeadReader,
    Opcode,
    build_close,
    build_request,
    check_response,
    encode_frame,
    generate_mask,
)

__all__ = ["BARE_SERVER", "FULL", "QUICK", "SERVERS", "EchoReport", "Plan", "run"]

BARE_SERVER = """\
import asyncio
from websockets.asyncio.server import serve

async def handler(ws):
    async for m in ws:
        await ws.send(m)

async def main():
    async with serve(handler, "127.0.0.1", 0) as server:
        print("listening on 127.0.0.1:%d" % server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

asyncio.run(main())
"""
"""The ten-line echo server of every ``websockets`` tutorial: the baseline."""

SERVERS: dict[str, tuple[list[str], str]] = {
    "bare websockets": (["-c", BARE_SERVER], "/"),
    "course-ws echo": (["-m", "course_ws", "serve", "echo"], "/echo"),
    "chat /echo": (["-m", "course_ws", "serve", "chat"], "/echo"),
    "raw": (["-m", "course_ws", "serve", "raw"], "/echo"),
}
"""Each server's command line (after ``python``) and the path that echoes."""
BASELINE = "bare websockets"

TIMEOUT = 15.0
"""Seconds any start, connection or run may take; nothing in a benchmark waits forever."""


@dataclass(frozen=True)
class Plan:
    """How much load, for how long, how many times."""

    clients: int
    size: int
    seconds: float
    rounds: int


QUICK = Plan(clients=10, size=100, seconds=0.3, rounds=1)
"""A few seconds: the tests."""
FULL = Plan(clients=50, size=100, seconds=4.0, rounds=5)
"""About two minutes: ``course-ws bench echo``, as ``benchmarks/echo.txt`` records."""


# -- the servers: subprocesses, as a learner starts them ----------------------------


class ServerProcess:
    """One server in a subprocess: its port, its CPU time, and a clean stop (SIGINT)."""

    def __init__(self, name: str) -> None:
        arguments, self.path = SERVERS[name]
        extra = ["--port", "0", "--log-level", "warning"] if "serve" in arguments else []
        self.process = subprocess.Popen(
            [sys.executable, *arguments, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.port = self._read_port(name)

    def _read_port(self, name: str) -> int:
        assert self.process.stdout is not None
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            found = re.search(r"listening on [\d.]+:(\d+)", line)
            if found:
                return int(found.group(1))
        self.stop()
        raise RuntimeError(f"{name}: the server did not say which port it listens on")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux ``/proc``)."""
        return system.cpu_seconds([self.process.pid])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()


# -- the load: cheap closed-loop clients in another process ------------------------


async def _open(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request, key = build_request(f"127.0.0.1:{port}", path)
    writer.write(request)
    head = HttpHeadReader()
    while (done := head.feed(await reader.read(4096))) is None:
        pass
    check_response(done[0], key)
    return reader, writer


async def _round_trips(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int, stop: asyncio.Event
) -> int:
    """Echo one message at a time until ``stop``; then close with 1000. The round trips done."""
    frame = encode_frame(Opcode.TEXT, b"x" * size, mask=generate_mask())
    reply = len(encode_frame(Opcode.TEXT, b"x" * size))  # the server's: unmasked
    count = 0
    while not stop.is_set():
        writer.write(frame)
        await reader.readexactly(reply)
        count += 1
    writer.write(encode_frame(Opcode.CLOSE, build_close(1000), mask=generate_mask()))
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        await reader.read()  # the server's close frame, then EOF
    writer.close()
    return count


async def _load(pipe: Connection) -> None:
    while True:
        command = await asyncio.to_thread(pipe.recv)
        if command is None:
            return
        port, path, plan = command
        async with asyncio.timeout(TIMEOUT):
            streams = await asyncio.gather(*(_open(port, path) for _ in range(plan.clients)))
        stop = asyncio.Event()
        pipe.send("ready")
        await asyncio.to_thread(pipe.recv)  # "go": the server's CPU time has been read
        start = time.perf_counter()
        loops = [asyncio.create_task(_round_trips(r, w, plan.size, stop)) for r, w in streams]
        await asyncio.sleep(plan.seconds)
        stop.set()
        elapsed = time.perf_counter() - start
        async with asyncio.timeout(TIMEOUT):
            counts = await asyncio.gather(*loops)
        pipe.send((sum(counts), elapsed))


def _load_main(pipe: Connection) -> None:
    asyncio.run(_load(pipe))


# -- the experiment and its report ---------------------------------------------------


@dataclass
class Sample:
    """One run against one server."""

    round_trips: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.round_trips / self.seconds

    @property
    def cpu_per_round_trip(self) -> float:
        return self.cpu_seconds / self.round_trips


@dataclass
class EchoReport:
    """Every run of every server; ``str()`` is the table of medians."""

    quick: bool
    plan: Plan
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def rate(self, name: str) -> float:
        """Median round trips per second of ``name``."""
        return statistics.median(sample.rate for sample in self.samples[name])

    def cpu(self, name: str) -> float:
        """Median server CPU seconds per round trip of ``name``."""
        return statistics.median(sample.cpu_per_round_trip for sample in self.samples[name])

    def __str__(self) -> str:
        plan = self.plan
        lines = [
            "course-ws bench echo" + (" --quick" if self.quick else ""),
            f"Python {platform.python_version()}, websockets {version('websockets')}; "
            f"{plan.clients} clients, {plan.size}-byte text messages, one at a time each; "
            f"median of {plan.rounds} interleaved run(s) of {plan.seconds:g} s",
            "",
            f"{'server':<16}{'round trips/s':>14}{'vs bare':>9}"
            f"{'CPU µs/round trip':>19}{'vs bare':>9}",
        ]
        base_rate, base_cpu = self.rate(BASELINE), self.cpu(BASELINE)
        for name in self.samples:
            rate, cpu = self.rate(name), self.cpu(name)
            lines.append(
                f"{name:<16}{rate:>14,.0f}{rate / base_rate:>8.2f}×"
                f"{cpu * 1e6:>19.1f}{cpu / base_cpu:>8.2f}×"
            )
        return "\n".join(lines)


def measure(plan: Plan, *, quick: bool = False) -> EchoReport:
    """Start every server, then run the load against each in turn, ``plan.rounds`` times."""
    report = EchoReport(quick, plan, {name: [] for name in SERVERS})
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    load = context.Process(target=_load_main, args=(child,), daemon=True)
    load.start()
    servers: dict[str, ServerProcess] = {}
    try:
        for name in SERVERS:
            servers[name] = ServerProcess(name)
        names = list(SERVERS)
        for round_ in range(plan.rounds):
            shift = round_ % len(names)
            for name in names[shift:] + names[:shift]:
                server = servers[name]
                parent.send((server.port, server.path, plan))
                if not parent.poll(TIMEOUT) or parent.recv() != "ready":
                    raise RuntimeError(f"{name}: the clients could not connect")
                before = server.cpu_seconds()
                parent.send("go")
                if not parent.poll(plan.seconds + TIMEOUT):
                    raise RuntimeError(f"{name}: the run did not finish")
                round_trips, seconds = parent.recv()
                cpu = server.cpu_seconds() - before
                report.samples[name].append(Sample(round_trips, seconds, cpu))
    finally:
        for server in servers.values():
            server.stop()
        parent.send(None)
        load.join(TIMEOUT)
        if load.is_alive():
            load.kill()
    return report


def run(*, quick: bool = False, plan: Plan | None = None) -> EchoReport:
    """Measure every server (``quick``: a few seconds in all) and return the report."""
    return measure(plan or (QUICK if quick else FULL), quick=quick)
