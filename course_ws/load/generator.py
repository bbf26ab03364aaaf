"""Running a load test: client processes, the phases they go through together, the report.

The run has three phases, each ended by every process saying so:

1. **connect**: each process opens its share of the members;
2. **send**: at one wall-clock instant, every process starts saying its share
   of the messages, for ``duration`` seconds, then waits for its own last
   messages to come back;
3. **drain**: once every process has sent, each waits until nothing more
   arrives, then reports what its members received.

The parent reads the server's memory between phases 1 and 2, draws the
progress bar from the counts the processes send four times a second, and
builds the :class:`~course_ws.load.report.LoadReport`.
"""

from __future__ import annotations

import itertools
import multiprocessing
import secrets
import time
import urllib.error
from collections.abc import Iterable, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from course_ws.clients.metrics import get_metrics
from course_ws.hosting.open_files import raise_open_files_limit
from course_ws.load.members import CLOSE_TIMEOUT, SETTLE_TIMEOUT, ProcessResult, Share, process_main
from course_ws.load.plan import LoadPlan
from course_ws.load.report import LoadReport, ServerMemory
from course_ws.load.system import open_files_soft_limit, process_tree, resident_bytes

SPARE = 30.0
"""Seconds of grace on top of each phase's own deadline before a silent process counts as stuck."""
START_DELAY = 0.2
"""Seconds between the parent's "go" and the first send: time for every process to hear it."""


def shares(plan: LoadPlan, tag: str) -> list[Share]:
    """Each process's clients: a contiguous block, so that each holds members of every room.

    Client *i* joins room *i mod rooms* and connects from source address
    *i mod addresses*; a process's share of the rate is its share of the clients.
    """
    addresses = plan.source_addresses()
    clients = [
        (i, plan.room(i, tag), addresses[i % len(addresses)] if addresses else None)
        for i in range(plan.clients)
    ]
    bounds = [plan.clients * p // plan.processes for p in range(plan.processes + 1)]
    return [
        Share(
            url=plan.url,
            clients=clients[low:high],
            rate=plan.rate * (high - low) / plan.clients,
            duration=plan.duration,
            tag=tag,
            seed=None if plan.seed is None else plan.seed + index,
            connect_timeout=plan.connect_timeout,
        )
        for index, (low, high) in enumerate(itertools.pairwise(bounds))
    ]


class _Processes:
    """The client processes, their pipes, and the counts they last reported."""

    def __init__(self, shares: list[Share]) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        for share in shares:
            parent, child = context.Pipe()
            process = context.Process(target=process_main, args=(child, share), daemon=True)
            self.pipes.append(parent)
            self.processes.append(process)
        self.counts: list[tuple[int, ...]] = [(0, 0, 0)] * len(shares)

    def start(self) -> None:
        for process in self.processes:
            process.start()

    def tell(self, message: tuple[Any, ...]) -> None:
        for pipe in self.pipes:
            pipe.send(message)

    def gather(self, kind: str, within: float, progress: _Bar) -> list[Any]:
        """Each process's next ``kind`` message, reading progress reports meanwhile."""
        answers: dict[int, Any] = {}
        deadline = time.monotonic() + within
        while len(answers) < len(self.pipes):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"client processes did not finish '{kind}' in {within:g} s")
            waiting = [i for i in range(len(self.pipes)) if i not in answers]
            ready = wait(
                [self.pipes[i] for i in waiting] + [self.processes[i].sentinel for i in waiting],
                min(left, 0.25),
            )
            for i in waiting:
                while self.pipes[i] in ready and self.pipes[i].poll():
                    message = self.pipes[i].recv()
                    if message[0] == "progress":
                        self.counts[i] = tuple(message[1:])
                    elif message[0] == kind:
                        answers[i] = message[1]
                        break
                dead = self.processes[i].sentinel in ready and not self.pipes[i].poll()
                if i not in answers and dead:
                    code = self.processes[i].exitcode
                    raise RuntimeError(f"client process {i} died (exit code {code})")
            progress.update(self.counts)
        return [answers[i] for i in range(len(self.pipes))]

    def end(self) -> None:
        """Let the processes close their connections and exit; a process waiting for the
        parent's next word (a run that failed) reads the end of its pipe and stops."""
        for pipe in self.pipes:
            pipe.close()
        for process in self.processes:
            process.join(CLOSE_TIMEOUT + 5)
            if process.is_alive():
                process.kill()
                process.join(5)


class _Bar:
    """The live progress bar (``rich``), on stderr; silent when not wanted."""

    def __init__(self, plan: LoadPlan, enabled: bool) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            disable=not enabled,
        )
        self.connecting = self.progress.add_task("connecting", total=plan.clients)
        self.sending = self.progress.add_task("sending", total=plan.planned_messages, start=False)
        self.delivered: TaskID | None = None

    def update(self, counts: Iterable[tuple[int, ...]]) -> None:
        connected, sent, delivered = (sum(column) for column in zip(*counts, strict=True))
        self.progress.update(self.connecting, completed=connected)
        self.progress.update(self.sending, completed=sent)
        if self.delivered is not None:
            self.progress.update(self.delivered, completed=delivered)

    def sending_started(self) -> None:
        self.progress.start_task(self.sending)
        self.delivered = self.progress.add_task("delivered", total=None)


def _server_memory(
    plan: LoadPlan, pids: list[int], before: int | None, connected: int
) -> ServerMemory:
    """The server's memory now that ``connected`` clients are in, from /proc or /metrics."""
    http_url = "http" + plan.url.removeprefix("ws")
    try:
        metrics: dict[str, float] | None = get_metrics(http_url)
    except (OSError, urllib.error.URLError, ValueError):
        metrics = None
    in_metrics = (metrics or {}).get("course_ws_connections")
    if pids:
        after = resident_bytes(pids)
        return ServerMemory("/proc", pids, before, after, connected, in_metrics)
    return ServerMemory(
        "unknown: pass --server-pid PID (the course's /metrics has no process memory)",
        metrics_connections=in_metrics,
        connections=connected,
    )


def run_load_test(
    plan: LoadPlan, *, server_pids: Sequence[int] = (), progress: bool = False
) -> LoadReport:
    """Run ``plan`` against its server and return the report (blocking; seconds to minutes).

    ``server_pids`` are the server's process ids (its worker processes are found
    under them): their resident memory before and after everyone connected gives
    the memory per connection. ``progress`` draws a live bar on stderr.
    """
    open_files = raise_open_files_limit()
    tag = secrets.token_hex(3)
    pids = [pid for root in server_pids for pid in process_tree(root)]
    before = resident_bytes(pids) if pids else None
    processes = _Processes(shares(plan, tag))
    bar = _Bar(plan, progress)
    started = time.monotonic()
    try:
        with bar.progress:
            processes.start()
            connected = sum(processes.gather("connected", plan.connect_timeout + SPARE, bar))
            server = _server_memory(plan, pids, before, connected)
            processes.tell(("go", time.time() + START_DELAY))
            bar.sending_started()
            processes.gather("sent", START_DELAY + plan.duration + SETTLE_TIMEOUT + SPARE, bar)
            processes.tell(("drain",))
            results: list[ProcessResult] = processes.gather("result", SETTLE_TIMEOUT + SPARE, bar)
    finally:
        processes.end()
    return LoadReport(
        plan=plan,
        tag=tag,
        addresses=plan.source_addresses(),
        open_files=open_files,
        server=server,
        server_open_files=open_files_soft_limit(server_pids[0]) if server_pids else None,
        elapsed=time.monotonic() - started,
        results=results,
    )
