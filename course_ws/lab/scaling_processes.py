"""``course-ws serve ...`` as a learner types it, run from a notebook; and what one process costs.

:func:`serve_command` runs the command line in a subprocess (``python -m
course_ws serve NAME FLAGS --port 0``), reads the port from its first line,
keeps its log in a file (never in a cell) and stops it with SIGTERM, as
Ctrl+C would, so that every client gets 1001. The same process answers
:meth:`ServedCommand.cpu_seconds`: user + system CPU time from ``/proc``, its
worker processes included.

:func:`measure_cpu_per_message` runs the course's load generator twice
against such a server, at a low and a high message rate, and reads the
server's CPU time around each run. The *difference* between the two runs,
divided by the difference in messages, is the CPU one more message costs:
what both runs share (connecting the clients, keepalive, idling) cancels out.
One core's worth of CPU per second, divided by that, is the rate at which one
process saturates its core.
"""

from __future__ import annotations

import contextlib
import re
import select
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from course_ws.bench import ONE_ADDRESS_CROWD
from course_ws.load import LoadPlan, LoadReport, run_load_test
from course_ws.load.system import cpu_seconds, process_tree

START_TIMEOUT = 30.0
"""Seconds the command may take to say where it listens (workers import their stack)."""
STOP_TIMEOUT = 20.0
"""Seconds it may take to close its clients and exit after SIGTERM before it is killed."""
LISTENING = re.compile(r" listening on (\S+):(\d+)$")

LOAD_FLAGS: tuple[str, ...] = tuple(
    part
    for option, value in ONE_ADDRESS_CROWD.items()
    for part in (f"--{option.replace('_', '-')}", f"{value:.0f}")
)
"""``--message-rate 1000000 ...``: per-address limits out of the way of a load test, whose
clients come from a handful of loopback addresses."""


class ServedCommand:
    """A running ``course-ws serve`` process: where it listens, its log, its CPU time."""

    def __init__(self, arguments: list[str], process: subprocess.Popen[str], log: Path) -> None:
        self.arguments = arguments
        self.process = process
        self.log_path = log
        self.host = ""
        self.port = 0

    @property
    def command(self) -> str:
        """The command line as a learner types it: ``course-ws serve chat --workers 2 ...``."""
        return shlex.join(["course-ws", *self.arguments])

    @property
    def url(self) -> str:
        """``ws://host:port``."""
        return f"ws://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The process's id (the supervisor's, with ``--workers``)."""
        return self.process.pid

    def pids(self) -> list[int]:
        """The process and its children (the workers, with ``--workers``)."""
        return process_tree(self.pid) if self.process.poll() is None else []

    def cpu_seconds(self) -> float:
        """CPU time of the process and its workers so far (see :func:`cpu_seconds`)."""
        return cpu_seconds(self.pids())

    def log(self) -> str:
        """What the command wrote to stderr so far: its log lines, warnings first."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int | None:
        """SIGTERM (Ctrl+C's effect: clients get 1001), then SIGKILL after a delay;
        the exit status. Idempotent."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> ServedCommand:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<ServedCommand {self.command!r} {self.url}>"


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The process's first line of stdout ('' if it exits or says nothing within ``timeout``)."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    return process.stdout.readline() if ready else ""


@contextlib.contextmanager
def serve_command(
    name: str, *flags: str, log_level: str = "warning", timeout: float = START_TIMEOUT
) -> Iterator[ServedCommand]:
    """Run ``course-ws serve NAME FLAGS --port 0 --log-level LEVEL`` for the ``with`` block.

    Returns once it listens; :class:`RuntimeError` with its log if it exits
    first (an unreachable broker, say). Its stderr goes to a temporary file,
    read with :meth:`ServedCommand.log`.
    """
    arguments = ["serve", name, *flags, "--port", "0", "--log-level", log_level]
    with tempfile.TemporaryDirectory(prefix="course-ws-serve-") as folder:
        log = Path(folder) / "stderr.log"
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "course_ws", *arguments],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,  # an interrupt in the notebook does not reach it
            )
        served = ServedCommand(arguments, process, log)
        try:
            first = _first_line(process, timeout)
            found = LISTENING.search(first.strip())
            if found is None:
                raise RuntimeError(f"{served.command} did not start: {first!r} {served.log()}")
            served.host, served.port = found.group(1), int(found.group(2))
            yield served
        finally:
            served.stop()


# -- CPU per message -------------------------------------------------------------------------


@dataclass(frozen=True)
class CpuRun:
    """One load run and the server CPU time it cost."""

    rate: float
    """Messages per second asked of the clients."""
    accepted: int
    """Messages the server gave an id."""
    delivered: int
    """Messages written to members (each message, once per member of its room)."""
    cpu: float
    """Server CPU seconds over the run (connecting included)."""
    lost: int


@dataclass(frozen=True)
class CpuReport:
    """Two load runs; their difference is the cost of the messages alone."""

    low: CpuRun
    high: CpuRun
    duration: float
    members_per_room: int

    @property
    def per_message(self) -> float:
        """Server CPU seconds per message said (its fan-out to the room included)."""
        return (self.high.cpu - self.low.cpu) / (self.high.accepted - self.low.accepted)

    @property
    def per_delivery(self) -> float:
        """Server CPU seconds per message written to one member."""
        return (self.high.cpu - self.low.cpu) / (self.high.delivered - self.low.delivered)

    @property
    def saturation(self) -> float:
        """Messages per second that would keep one core busy all the time."""
        return 1.0 / self.per_message

    @property
    def busy(self) -> float:
        """Share of one core the server used while the high-rate run was sending."""
        return self.high.cpu / self.duration

    def __str__(self) -> str:
        lines = [f"{'rate asked':>12} {'accepted':>9} {'delivered':>10} {'lost':>5}  server CPU"]
        for run in (self.low, self.high):
            lines.append(
                f"{run.rate:>10g}/s {run.accepted:>9,} {run.delivered:>10,} {run.lost:>5}  "
                f"{run.cpu * 1000:.0f} ms"
            )
        lines += [
            f"the difference: {self.per_message * 1e6:.0f} µs of CPU per message said "
            f"({self.members_per_room} members per room: {self.per_delivery * 1e6:.1f} µs "
            f"per delivery)",
            f"one core saturates near {self.saturation:,.0f} messages/s "
            f"({self.saturation * self.members_per_room:,.0f} deliveries/s)",
        ]
        return "\n".join(lines)


def _run(served: ServedCommand, plan: LoadPlan) -> CpuRun:
    before = served.cpu_seconds()
    report: LoadReport = run_load_test(plan)
    cpu = served.cpu_seconds() - before
    return CpuRun(plan.rate, report.accepted, report.delivered, cpu, report.lost)


def measure_cpu_per_message(
    served: ServedCommand,
    *,
    rates: tuple[float, float] = (200.0, 1000.0),
    clients: int = 40,
    rooms: int = 4,
    duration: float = 1.0,
) -> CpuReport:
    """Load ``served`` at two message rates (same clients, rooms and duration) and compare
    its CPU time. Start the server with :data:`LOAD_FLAGS`. Blocking: a few seconds."""
    low, high = (
        _run(served, LoadPlan(served.url, clients, rooms, rate, duration, seed=7)) for rate in rates
    )
    return CpuReport(low, high, duration, clients // rooms)
