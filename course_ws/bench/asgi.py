"""``course-ws bench asgi``: the course's ASGI servers against their bare frameworks and ``chat``.

The ``asgi``, ``starlette`` and ``fastapi`` servers add production habits to
what a tutorial writes: request checks, a send deadline, metrics, a host that
closes with 1001 at shutdown, a bounded outbox per chat member. This benchmark
measures what those habits cost, in one run, on loopback:

* **Echo round trips per second**, with 1 client and with 50 concurrent
  clients, for each course server under each of uvicorn's WebSocket
  implementations (``--ws websockets-sansio`` and ``--ws wsproto``), each beside
  its *bare* framework echo (:mod:`course_ws.bench.bare`: the same stack and
  uvicorn settings, no course code), and beside the ``echo`` and ``chat``
  servers on ``websockets``. The machinery is ``course-ws bench echo``'s
  (:mod:`course_ws.bench.echo`): each server in its own process, started as a
  learner starts it; the load from one other process, closed-loop clients that
  speak the protocol with :mod:`course_ws.rfc6455` on plain asyncio streams.
  Besides the rate, the server's CPU per round trip, and how busy the server
  and the client process were: that says what limited the figure.
* **Fan-out to 1,000 members of one room**: the time from the server receiving
  a ``say`` to its last write to a member, as ``course-ws bench fanout``
  defines the chat server's fan-out time; for the ASGI servers, to the last
  member's ``websocket.send`` returning (timed by :class:`FanoutClock`, an ASGI
  middleware). Also the time until the message had *reached* every member,
  send → the last member's receipt. The server runs in this process, its
  members in two others (:class:`course_ws.bench.crowd.Crowd`), as in
  ``course-ws bench fanout``.

Targets, printed as ratios with PASS or MISS: each course server's echo rate at
least 0.9× its bare framework's under the same WebSocket implementation, and
each course server's fan-out time at most 1.5× the ``chat`` server's.

Echo runs are interleaved (every server once per round, in a rotating order; a
course server and its bare framework back to back, in alternating order), and
each ratio is the median of the rounds' ratios: a burst of load from elsewhere
hits both sides of a ratio alike.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path

from course_ws.bench import ONE_ADDRESS_CROWD
from course_ws.bench.crowd import Crowd
from course_ws.bench.echo import TIMEOUT, Plan, Sample, ServerProcess, _load_main
from course_ws.bench.fanout import ms, table
from course_ws.hosting.listening import bind_listener, socket_address
from course_ws.load import system
from course_ws.options import WS_IMPLEMENTATIONS, ServeOptions, WsImplementation
from course_ws.servers import StartedServer, chat
from course_ws.servers._asgi_chat import start_chat_app
from course_ws.servers._asgi_host import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "FULL",
    "QUICK",
    "STACKS",
    "AsgiReport",
    "EchoServer",
    "FanoutClock",
    "FanoutRow",
    "Settings",
    "echo_servers",
    "run",
]

STACKS = ("asgi", "starlette", "fastapi")
"""The course's ASGI servers (catalogue names); each has a bare echo in :mod:`.bare`."""
UNPAIRED = ("channels",)
"""ASGI servers measured beside the others, without a bare echo to compare with."""
UNTIMED = ("channels",)
"""Servers whose fan-out :class:`FanoutClock` cannot time: Channels reads the next frame
before it handles the last (``await_many_dispatch``), and its fan-out runs later, in the
bus's task. Their "vs chat" compares reach-all times instead."""
ECHO_TARGET = 0.9
"""A course server's echo rate must be at least this times its bare framework's."""
FANOUT_TARGET = 1.5
"""A course server's fan-out time must be at most this times the ``chat`` server's."""
SATURATED = 0.9
"""A server busy this share of a core or more is the bottleneck of its echo run."""
PUBLISHER = "publisher"
"""The user name of the member that says the timed messages."""


@dataclass(frozen=True)
class Settings:
    """How much load, for how long, how many times."""

    clients: tuple[int, ...]
    """Concurrent echo clients, one run each."""
    size: int
    """Bytes of each echoed text message."""
    seconds: float
    """Length of one echo run."""
    rounds: int
    """Echo runs per server and client count; the report keeps the median."""
    members: int
    """Members of the fan-out room."""
    messages: int
    """Timed messages said into the room, one at a time."""
    deadline: float
    """Seconds a message may take to reach every member before it counts as lost."""


QUICK = Settings(
    clients=(1, 5), size=100, seconds=0.2, rounds=1, members=20, messages=2, deadline=5.0
)
"""Every row, in seconds: the tests."""
FULL = Settings(
    clients=(1, 50), size=100, seconds=1.0, rounds=6, members=1000, messages=30, deadline=10.0
)
"""About four minutes: ``course-ws bench asgi``, as ``benchmarks/asgi.txt`` records."""


# -- the echo servers -----------------------------------------------------------------


@dataclass(frozen=True)
class EchoServer:
    """One echo server of the comparison: a catalogue server, or a bare framework echo."""

    name: str
    """The catalogue name (``asgi``, ``echo``...); for a bare echo, its course counterpart's."""
    ws: WsImplementation | None = None
    """uvicorn's WebSocket implementation; ``None`` for the servers on ``websockets``."""
    bare: bool = False

    @property
    def label(self) -> str:
        """``asgi``, ``bare asgi``, ``chat /echo``: the server column of the report."""
        if self.bare:
            return f"bare {self.name}"
        return "chat /echo" if self.name == "chat" else self.name

    @property
    def ws_label(self) -> str:
        """uvicorn's WebSocket implementation, or ``(websockets)``."""
        return self.ws or "(websockets)"

    def arguments(self) -> list[str]:
        """The command line after ``python``: every server logs warnings only."""
        if self.bare:
            assert self.ws is not None
            return ["-m", "course_ws.bench.bare", self.name, "--ws", self.ws]
        serve = ["-m", "course_ws", "serve", self.name, "--port", "0", "--log-level", "warning"]
        return [*serve, "--ws", self.ws] if self.ws else serve


def echo_servers() -> list[tuple[EchoServer, ...]]:
    """Every echo server, grouped as measured back to back: each course server with its bare."""
    groups: list[tuple[EchoServer, ...]] = [(EchoServer("echo"),), (EchoServer("chat"),)]
    for ws in WS_IMPLEMENTATIONS:
        groups += [(EchoServer(name, ws), EchoServer(name, ws, bare=True)) for name in STACKS]
        groups += [(EchoServer(name, ws),) for name in UNPAIRED]
    return groups


class _Launched(ServerProcess):
    """:class:`course_ws.bench.echo.ServerProcess` for a command line of this benchmark.

    Started in two steps, so that every server can start at once (:meth:`wait_ready`).
    """

    def __init__(self, server: EchoServer, data_home: str) -> None:  # not super(): see SERVERS
        self.server = server
        self.path = "/echo"
        self.process = subprocess.Popen(
            [sys.executable, *server.arguments()],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "XDG_DATA_HOME": data_home},  # channels' database: not the user's
        )

    def wait_ready(self) -> None:
        """Read the port the server says it listens on."""
        self.port = self._read_port(self.server.label)


@dataclass
class EchoSample(Sample):
    """One echo run against one server, and the CPU time of the client process."""

    client_cpu_seconds: float = 0.0

    def busy(self) -> tuple[float, float]:
        """Fractions of one core the server and the client process used."""
        return self.cpu_seconds / self.seconds, self.client_cpu_seconds / self.seconds


def _echo_run(
    pipe: Connection, load_pid: int, server: _Launched, clients: int, s: Settings
) -> EchoSample:
    """One run of ``clients`` closed-loop clients against ``server``, by the load process."""
    label = server.server.label
    pipe.send((server.port, server.path, Plan(clients, s.size, s.seconds, 1)))
    if not pipe.poll(TIMEOUT) or pipe.recv() != "ready":
        raise RuntimeError(f"{label}: the clients could not connect")
    before, load_before = server.cpu_seconds(), system.cpu_seconds([load_pid])
    pipe.send("go")
    if not pipe.poll(s.seconds + TIMEOUT):
        raise RuntimeError(f"{label}: the run did not finish")
    round_trips, seconds = pipe.recv()
    cpu, load_cpu = server.cpu_seconds() - before, system.cpu_seconds([load_pid]) - load_before
    return EchoSample(round_trips, seconds, cpu, load_cpu)


def measure_echo(s: Settings) -> dict[EchoServer, dict[int, list[EchoSample]]]:
    """Start every echo server, then run each client count against each, ``s.rounds`` times."""
    groups = echo_servers()
    samples: dict[EchoServer, dict[int, list[EchoSample]]] = {
        server: {n: [] for n in s.clients} for group in groups for server in group
    }
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    load = context.Process(target=_load_main, args=(child,), daemon=True)
    load.start()
    assert load.pid is not None
    launched: list[_Launched] = []
    data_home = tempfile.TemporaryDirectory(prefix="course-ws-bench-")
    try:
        for server in samples:
            launched.append(_Launched(server, data_home.name))
        for process in launched:
            process.wait_ready()
        by_server = {process.server: process for process in launched}
        for round_ in range(s.rounds):
            shift = round_ % len(groups)
            for group in groups[shift:] + groups[:shift]:
                for server in group if round_ % 2 == 0 else group[::-1]:
                    for clients in s.clients:
                        run = _echo_run(parent, load.pid, by_server[server], clients, s)
                        samples[server][clients].append(run)
    finally:
        for process in launched:
            process.stop()
        parent.send(None)
        load.join(TIMEOUT)
        if load.is_alive():
            load.kill()
        data_home.cleanup()
    return samples


# -- fan-out --------------------------------------------------------------------------


class FanoutClock:
    """ASGI middleware that times the chat's fan-out: a ``say`` received → the last send done.

    ``said`` is when the app's ``receive`` returned the publisher's last frame;
    ``last_send`` when the last ``send`` of any connection returned (uvicorn's
    ``send`` returns once the frame is handed to the transport); ``handled``
    when the publisher's handler next asked for a frame. Members that keep up
    are written to synchronously, inside the publisher's handling of its frame
    (the outbox's ``write_now``), without any ASGI ``send``: those writes are
    done by ``handled``. With one message in flight and nothing else sent
    meanwhile, the later of the two, minus ``said``, is the fan-out time of that
    message. The cost: one more ``await`` per send.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.said = 0.0
        self.last_send = 0.0
        self.handled = 0.0

    @property
    def fanout_time(self) -> float:
        """Seconds from the last ``say`` received to the last write to a member after it."""
        return max(self.last_send, self.handled) - self.said

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return

        async def timed_receive() -> Message:
            self.handled = time.perf_counter()
            message = await receive()
            if message["type"] == "websocket.receive":
                self.said = time.perf_counter()
            return message

        async def timed_send(message: Message) -> None:
            await send(message)
            self.last_send = time.perf_counter()

        publisher = f"user={PUBLISHER}".encode() in scope.get("query_string", b"")
        await self.app(scope, timed_receive if publisher else receive, timed_send)


@dataclass
class FanoutRow:
    """One server's fan-out to the room: a list entry per timed message."""

    name: str
    ws: WsImplementation | None
    fanout: list[float] = field(default_factory=list)
    """Seconds from receiving each ``say`` to its last write to a member."""
    reach_all: list[float] = field(default_factory=list)
    """Seconds from sending each ``say`` to its receipt by the last member (inf: lost)."""

    @property
    def median(self) -> float:
        return statistics.median(self.fanout) if self.fanout else math.nan


class _Room:
    """One chat server in this process, with a room of members in two other processes."""

    def __init__(self, row: FanoutRow, s: Settings, database: str) -> None:
        self.row = row
        self.settings = s
        self.options = ServeOptions(
            **ONE_ADDRESS_CROWD,
            ping_interval=None,
            presence_limit=0,  # the timed messages are the only traffic
            ws=row.ws or WS_IMPLEMENTATIONS[0],
            database=database,
        )
        self.sock = bind_listener("127.0.0.1", 0)
        host, port = socket_address(self.sock)
        base = f"ws://{host}:{port}/chat/bench"
        self.crowd = Crowd(
            [f"{base}?user=m{n}" for n in range(s.members)], publisher=f"{base}?user={PUBLISHER}"
        )
        self.running: StartedServer | None = None
        self.last_fanout: Callable[[], float] = lambda: math.nan

    async def open(self) -> None:
        """Start the server, then its members: return once every member is connected."""
        if self.row.ws is None:
            observed: list[float] = []
            self.running = await chat.start(
                self.options, self.sock, observe_publish=observed.append
            )
            self.last_fanout = lambda: observed[-1]
        else:
            module = importlib.import_module(f"course_ws.servers.{self.row.name}")
            clock = FanoutClock(module.create_app(self.options))
            # The lifespan starts the app (for channels: migrations, in a thread).
            self.running = await start_chat_app(clock, self.options, self.sock)
            self.last_fanout = lambda: clock.fanout_time
        await self.crowd.start()

    async def say(self, *, timed: bool) -> None:
        """One message into the room; once every member has it, record its times if ``timed``."""
        s = self.settings
        await self.crowd.say(1, 0)
        latencies = (await self.crowd.collect(1, s.members, s.deadline)).get("chat", [])
        if timed:
            if self.row.name not in UNTIMED:
                self.row.fanout.append(self.last_fanout())
            complete = len(latencies) >= s.members
            self.row.reach_all.append(max(latencies) if complete else math.inf)

    async def aclose(self) -> None:
        """Disconnect the members and stop the server."""
        await self.crowd.close()
        if self.running is not None:
            await self.running.aclose()
        self.sock.close()


async def measure_fanout(s: Settings) -> list[FanoutRow]:
    """Fan-out on ``chat`` and on each ASGI server under each implementation, interleaved.

    Every server and its room are up at once; each round says one message into
    each room in turn (in a rotating order), so that a burst of load from
    elsewhere hits every server alike. The first round warms up and is not timed.
    """
    rows = [FanoutRow("chat", None)]
    rows += [FanoutRow(name, ws) for ws in WS_IMPLEMENTATIONS for name in STACKS + UNPAIRED]
    with tempfile.TemporaryDirectory(prefix="course-ws-bench-") as folder:
        # The channels server's database: not the user's. Django's settings belong to the
        # whole process, so where they are set already (a test run), that database it is.
        from course_ws.servers._channels.settings import configured_database

        database = str(configured_database() or Path(folder) / "chat.sqlite3")
        return await _fanout_rooms([_Room(row, s, database) for row in rows], s)


async def _fanout_rooms(rooms: list[_Room], s: Settings) -> list[FanoutRow]:
    try:
        for room in rooms:
            await room.open()
        # Seven servers' connections in one process make full collections long (hundreds
        # of ms at 7,000 members) and they would pause whichever server is fanning out:
        # what exists now is left out of every collection until the end.
        gc.collect()
        gc.freeze()
        for round_ in range(1 + s.messages):
            shift = round_ % len(rooms)
            for room in rooms[shift:] + rooms[:shift]:
                await room.say(timed=round_ > 0)
    finally:
        gc.unfreeze()
        for room in rooms:
            await room.aclose()
    return [room.row for room in rooms]


# -- the report -------------------------------------------------------------------------


def _verdict(ratio: float, passed: bool) -> str:
    return f"{ratio:.2f}× {'PASS' if passed else 'MISS'}"


def _machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if "model name" in ln), "")
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs {model}".rstrip()


@dataclass
class AsgiReport:
    """Everything one run measured; ``str()`` is the report."""

    quick: bool
    settings: Settings
    echo: dict[EchoServer, dict[int, list[EchoSample]]]
    fanout: list[FanoutRow]

    def rate(self, server: EchoServer, clients: int) -> float:
        """Median round trips per second."""
        return statistics.median(sample.rate for sample in self.echo[server][clients])

    def cpu(self, server: EchoServer, clients: int) -> float:
        """Median server CPU seconds per round trip."""
        samples = self.echo[server][clients]
        return statistics.median(sample.cpu_per_round_trip for sample in samples)

    def busy(self, server: EchoServer, clients: int) -> tuple[float, float]:
        """Median fractions of a core used by the server and by the client process."""
        samples = self.echo[server][clients]
        return (
            statistics.median(sample.busy()[0] for sample in samples),
            statistics.median(sample.busy()[1] for sample in samples),
        )

    def client_cpu(self, server: EchoServer, clients: int) -> float:
        """Median CPU seconds per round trip of the client process."""
        samples = self.echo[server][clients]
        return statistics.median(
            sample.client_cpu_seconds / sample.round_trips for sample in samples
        )

    def echo_ratio(self, server: EchoServer, clients: int) -> float:
        """Median over rounds of this course server's rate / its bare framework's, back to back."""
        bare = EchoServer(server.name, server.ws, bare=True)
        pairs = zip(self.echo[server][clients], self.echo[bare][clients], strict=True)
        return statistics.median(course.rate / base.rate for course, base in pairs)

    def fanout_ratio(self, row: FanoutRow) -> float:
        """This server's median fan-out time / the ``chat`` server's (reach-all's, untimed)."""
        if row.name in UNTIMED:
            return statistics.median(row.reach_all) / statistics.median(self.fanout[0].reach_all)
        return row.median / self.fanout[0].median

    def __str__(self) -> str:
        s = self.settings
        few, many = s.clients[0], s.clients[-1]
        lines = [
            "course-ws bench asgi" + (" --quick" if self.quick else ""),
            f"{_machine()}; Python {platform.python_version()}, uvicorn {version('uvicorn')}, "
            f"websockets {version('websockets')}, wsproto {version('wsproto')}, "
            f"starlette {version('starlette')}, fastapi {version('fastapi')}",
            "Every server: asyncio's own event loop (asyncio.run, not uvloop), httptools, "
            "compression off, the course's max size and keepalive.",
            "",
            f"Echo: {s.size}-byte text messages, each client one at a time; median of "
            f"{s.rounds} interleaved run(s) of {s.seconds:g} s. CPU: the server's, per round trip.",
            f"Busy: the share of one core used by the server and by the client process "
            f"({many} clients).",
            table(
                [
                    "ws",
                    "server",
                    f"{few} client rt/s",
                    "CPU µs",
                    f"{many} clients rt/s",
                    "CPU µs",
                    "server busy",
                    "client busy",
                ],
                [self._echo_cells(server) for server in self.echo],
            ),
            *self._echo_limits(),
            "",
            f"Fan-out to {s.members:,} members of one room, {s.messages} messages one at a "
            "time (ms): receiving a say -> its last",
            "write to a member (p50, max); and send -> receipt by the last member (reach-all p50).",
            table(
                ["ws", "server", "fan-out p50", "max", "reach-all p50", "vs chat"],
                [
                    [
                        row.ws or "(websockets)",
                        "chat" if row.ws is None else row.name,
                        ms(row.median),
                        ms(max(row.fanout, default=math.nan)),
                        ms(statistics.median(row.reach_all) if row.reach_all else math.nan),
                        f"{self.fanout_ratio(row):.2f}×",
                    ]
                    for row in self.fanout
                ],
            ),
            "channels: no fan-out clock (see UNTIMED); its 'vs chat' compares reach-all times.",
            f"All {len(self.fanout)} servers run in this process at once, each room's members "
            "in two other",
            "processes; the rounds are interleaved and the process's objects are left out of",
            "garbage collection while timing (a full collection of seven servers' heaps pauses",
            "for hundreds of ms). Reach-all includes the members' own reading, on the same cores.",
            "",
            f"Targets: echo rate >= {ECHO_TARGET}× the bare framework's (median of the rounds' "
            f"ratios, back to back); fan-out <= {FANOUT_TARGET}× chat's.",
            table(
                ["ws", "server", f"echo {few} client", f"echo {many} clients", "fan-out"],
                [self._target_cells(row) for row in self.fanout[1:]],
            ),
        ]
        return "\n".join(lines)

    def _echo_limits(self) -> list[str]:
        """What limited the echo figures of this run, from its own measurements."""
        few, many = self.settings.clients[0], self.settings.clients[-1]
        busy = [self.busy(server, many) for server in self.echo]
        low, high = min(b[0] for b in busy), max(b[0] for b in busy)
        client_us = statistics.median(self.client_cpu(server, few) for server in self.echo) * 1e6
        verdict = (
            "every server was CPU-bound: a rate is about 1 / its CPU per round trip."
            if low >= SATURATED
            else "not every server was CPU-bound (other load?): compare the CPU columns."
        )
        return [
            f"What limits them: with {many} clients each server used {low:.0%}-{high:.0%} of a "
            f"core and the client process at most {max(b[1] for b in busy):.0%} of the other;",
            verdict,
            f"With {few} client a round trip also holds the client's work ({client_us:.0f} µs "
            "of CPU, the same for every server) and two wake-ups:",
            f"{few}-client ratios understate a server's own cost, which its CPU column shows.",
        ]

    def _echo_cells(self, server: EchoServer) -> list[str]:
        few, many = self.settings.clients[0], self.settings.clients[-1]
        server_busy, client_busy = self.busy(server, many)
        return [
            server.ws_label,
            server.label,
            f"{self.rate(server, few):,.0f}",
            f"{self.cpu(server, few) * 1e6:.1f}",
            f"{self.rate(server, many):,.0f}",
            f"{self.cpu(server, many) * 1e6:.1f}",
            f"{server_busy:.0%}",
            f"{client_busy:.0%}",
        ]

    def _target_cells(self, row: FanoutRow) -> list[str]:
        server = EchoServer(row.name, row.ws)
        cells = [row.ws or "", row.name]
        for clients in (self.settings.clients[0], self.settings.clients[-1]):
            if row.name in UNPAIRED:
                cells.append("(no bare echo)")
                continue
            ratio = self.echo_ratio(server, clients)
            cells.append(_verdict(ratio, ratio >= ECHO_TARGET))
        ratio = self.fanout_ratio(row)
        if row.name in UNTIMED:  # no target: the issue sets one for the chapter 04 servers
            cells.append(f"{ratio:.2f}× (reach-all)")
        else:
            cells.append(_verdict(ratio, ratio <= FANOUT_TARGET))
        return cells


def run(*, quick: bool = False, settings: Settings | None = None) -> AsgiReport:
    """Measure every server (``quick``: seconds, every row) and return the report."""
    s = settings or (QUICK if quick else FULL)
    echo = measure_echo(s)
    fanout = asyncio.run(measure_fanout(s))
    return AsgiReport(quick, s, echo, fanout)
