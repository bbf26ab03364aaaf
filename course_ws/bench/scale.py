"""``course-ws bench scale``: chapter 06's claims, measured through the real programs.

Everything runs on loopback against the ``chat`` server as
:func:`~course_ws.hosting.deploy.deploy_local` runs it: a real ``redis-server``
(append-only, ``appendfsync always``), worker processes with ``--broker
redis://``, and a real ``nginx`` in front (``least_conn``). The clients are the
course's load generator (:func:`course_ws.load.run_load_test`): several
processes, each client bound to one of several loopback source addresses.

1. **Held connections**: ``hold_clients`` members (rooms of 100) open through
   nginx to 2 workers and stay for ``hold_seconds``. The workers ping every
   :data:`PING_INTERVAL` seconds (20 s by default; shortened so that pings
   happen many times during the hold) and a raw-socket observer counts the
   pings it receives. A trickle of messages (one per room every few seconds)
   proves at the end that every connection still delivers: a member that
   missed one is a loss. *Dropped* counts connections that failed to open or
   ended before the run did.
2. **Fan-out added latency**: one room whose members nginx spreads over 2
   workers, reached through Redis, against the same room on one process with
   ``memory://`` (behind nginx too, so that only the broker differs), and on
   one worker through Redis. Runs are interleaved; latencies are pooled.
3. **Messages per second**: the publish rate is raised step by step, with 1
   and with 2 workers, until a step is not sustained (a message lost or
   refused, or a p95 delivery latency above :data:`LATENCY_LIMIT_MS`).

On a machine with two cores the load generator, nginx, Redis and the workers
all compete for the same cores, so every run says who used the CPU
(:mod:`.scale_watch`). Timings are reported, never asserted.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from course_ws.bench import ONE_ADDRESS_CROWD
from course_ws.bench.asgi import _machine
from course_ws.bench.fanout import ms, table
from course_ws.bench.scale_watch import (
    CpuMeter,
    CpuUse,
    Deployment,
    PingObserver,
    Watch,
    Watcher,
    one_process_behind_nginx,
)
from course_ws.hosting.deploy import deploy_local
from course_ws.hosting.open_files import raise_open_files_limit
from course_ws.hosting.programs import PROGRAMS, find_program
from course_ws.lab.fanout import latency_percentile
from course_ws.load import LoadPlan, LoadReport, run_load_test
from course_ws.load.system import open_files_soft_limit

__all__ = ["FULL", "QUICK", "ScaleReport", "Settings", "run"]

PING_INTERVAL = 5.0
"""Seconds between the workers' keepalive pings in every deployment here (default 20 s)."""
LATENCY_LIMIT_MS = 100.0
"""A step of the ramp whose p95 delivery latency exceeds this is not sustained."""
ADDED_P50_TARGET_MS = 2.0
"""Chapter 06's target for the p50 latency that Redis and a second worker add to a fan-out."""
HOLD_ROOM_SIZE = 100
SERVER_OPTIONS: dict[str, Any] = {
    **ONE_ADDRESS_CROWD,
    "ping_interval": PING_INTERVAL,
    "presence_limit": 0,
    "log_level": "warning",
}
"""What every worker here is started with: per-address limits lifted (the load comes from a
few loopback addresses), pings every :data:`PING_INTERVAL` seconds, and no join or leave
announcements. The load generator reads none of a process's members until all of them are
open; a member whose unread announcements pass websockets' ``max_queue`` (16 frames) stops
being read, so its pongs stop too, and the server's keepalive closes it with 1011 once
opening the whole crowd takes longer than a ping interval plus its timeout."""


@dataclass(frozen=True)
class Settings:
    """The sizes of one run."""

    hold_clients: int
    hold_seconds: float
    hold_rate: float
    """Messages per second during the hold, all rooms together: the liveness trickle."""
    hold_processes: int
    fanout_members: int
    fanout_rate: float
    fanout_seconds: float
    fanout_rounds: int
    ramp_clients: int
    ramp_room_size: int
    ramp_rates: tuple[float, ...]
    ramp_seconds: float


QUICK = Settings(
    hold_clients=200,
    hold_seconds=2.0,
    hold_rate=10.0,
    hold_processes=2,
    fanout_members=20,
    fanout_rate=20.0,
    fanout_seconds=1.0,
    fanout_rounds=1,
    ramp_clients=20,
    ramp_room_size=10,
    ramp_rates=(50.0, 100.0),
    ramp_seconds=1.0,
)
"""Seconds: the tests."""
FULL = Settings(
    hold_clients=10_000,
    hold_seconds=60.0,
    hold_rate=10.0,
    hold_processes=4,
    fanout_members=100,
    fanout_rate=20.0,
    fanout_seconds=6.0,
    fanout_rounds=2,
    ramp_clients=200,
    ramp_room_size=10,
    ramp_rates=(250.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 4000.0, 5000.0),
    ramp_seconds=3.0,
)
"""About three minutes: ``course-ws bench scale``, as ``benchmarks/scale.txt`` records."""


# -- one measured run ------------------------------------------------------------------


@dataclass
class Run:
    """One load run against one deployment, and what the other side did meanwhile."""

    deployment: str
    workers: int
    report: LoadReport
    cpu: CpuUse
    watch: Watch

    @property
    def clean(self) -> bool:
        """Everyone connected and stayed; every message accepted, delivered once to all."""
        r = self.report
        return (
            r.connected == r.plan.clients
            and not r.close_codes
            and r.sent == r.accepted == r.plan.planned_messages
            and not r.refused
            and r.unanswered == r.lost == r.duplicated == 0
        )

    @property
    def send_seconds(self) -> float:
        return self.report.plan.duration

    @property
    def sending_cpu(self) -> CpuUse:
        """CPU use while the messages were sent: the busiest stretch as long as the sending
        (the whole run if the samples are too few)."""
        return self.watch.busiest(self.send_seconds) or self.cpu


def measured_run(deployment: Deployment, plan: LoadPlan) -> Run:
    """``plan`` against ``deployment``, with its CPU, memory and connections watched."""
    with Watcher(deployment) as watcher, CpuMeter(deployment) as meter:
        report = run_load_test(plan, server_pids=deployment.worker_pids)
    assert meter.use is not None
    return Run(deployment.label, len(deployment.worker_pids), report, meter.use, watcher.watch)


# -- 1. held connections -----------------------------------------------------------------


@dataclass
class Hold:
    """The held connections: the run, the observer's pings, nginx's complaints."""

    run: Run
    pings: int
    ping_seconds: float
    observer_error: str | None
    nginx_errors: list[str]
    nginx_file_limits: list[int]
    """Each nginx worker's limit of open files (``worker_rlimit_nofile``, if it could set it)."""

    @property
    def dropped(self) -> int:
        """Connections that failed to open or ended before the run did."""
        report = self.run.report
        return sum(report.connect_failures.values()) + sum(report.close_codes.values())

    @property
    def nginx_per_connection(self) -> float:
        """Bytes of nginx's memory (master and workers) per client connection."""
        watch, connected = self.run.watch, self.run.report.connected
        return (watch.nginx_peak - watch.nginx_before) / connected if connected else math.nan


def hold_connections(deployment: Deployment, s: Settings) -> Hold:
    """Open ``s.hold_clients`` members through nginx, keep them ``s.hold_seconds``, count."""
    plan = LoadPlan(
        deployment.url,
        clients=s.hold_clients,
        rooms=max(1, s.hold_clients // HOLD_ROOM_SIZE),
        rate=s.hold_rate,
        duration=s.hold_seconds,
        processes=s.hold_processes,
        connect_timeout=120.0,
        seed=1,
    )
    log = deployment.nginx.error_log
    log_start = log.stat().st_size if log.exists() else 0
    complaints: list[str] = []
    limits = [open_files_soft_limit(pid) or 0 for pid in deployment.nginx_pids[1:]]
    with PingObserver(deployment.url) as observer:
        run = measured_run(deployment, plan)
    with contextlib.suppress(OSError), log.open("rb") as errors:
        errors.seek(log_start)
        complaints = errors.read().decode(errors="replace").splitlines()
    return Hold(run, observer.pings, observer.seconds, observer.error, complaints, limits)


# -- 2. fan-out added latency ------------------------------------------------------------


@dataclass
class FanoutRow:
    """One deployment's room: its runs pooled."""

    label: str
    runs: list[Run] = field(default_factory=list)

    @property
    def latencies(self) -> list[float]:
        return [t for run in self.runs for t in run.report.latencies]

    def percentile(self, rank: int) -> float:
        """Seconds; deliveries owed but never made count as infinitely late."""
        expected = sum(run.report.expected for run in self.runs)
        return latency_percentile(self.latencies, rank, expected)

    @property
    def members_per_worker(self) -> str:
        peaks = [
            max(run.watch.connections_peak[i] for run in self.runs)
            for i in range(len(self.runs[0].watch.connections_peak))
        ]
        return _counts(peaks, " + ")


def fanout_latency(deployments: list[Deployment], s: Settings) -> list[FanoutRow]:
    """One room of ``s.fanout_members`` on each deployment, rounds interleaved."""
    rows = [FanoutRow(d.label) for d in deployments]
    for round_ in range(s.fanout_rounds):
        order = list(range(len(deployments)))
        if round_ % 2:
            order.reverse()  # a disturbance from elsewhere hits every deployment alike
        for index in order:
            plan = LoadPlan(
                deployments[index].url,
                clients=s.fanout_members,
                rooms=1,
                rate=s.fanout_rate,
                duration=s.fanout_seconds,
                processes=2,
                seed=round_,
            )
            rows[index].runs.append(measured_run(deployments[index], plan))
    return rows


# -- 3. messages per second ----------------------------------------------------------------


@dataclass
class Step:
    """One rate of the ramp: one run, or two when the first was not sustained."""

    runs: list[Run]

    @property
    def run(self) -> Run:
        """The run that counts: the first sustained one, else the last."""
        return next((run for run in self.runs if _sustained(run)), self.runs[-1])

    @property
    def rate(self) -> float:
        return self.run.report.plan.rate

    @property
    def p95_ms(self) -> float:
        return _p95_ms(self.run)

    @property
    def sustained(self) -> bool:
        return _sustained(self.run)

    @property
    def worker_cpu_per_message(self) -> float:
        """Seconds of CPU all workers together spent per message while it was sent."""
        cpu = self.run.sending_cpu
        return sum(cpu.workers) / (self.rate * cpu.elapsed)


def _p95_ms(run: Run) -> float:
    return latency_percentile(run.report.latencies, 95, run.report.expected) * 1e3


def _sustained(run: Run) -> bool:
    return run.clean and _p95_ms(run) <= LATENCY_LIMIT_MS


def ramp(deployment: Deployment, s: Settings) -> list[Step]:
    """Raise the rate through ``s.ramp_rates`` until a step is not sustained (it is kept).

    A rate that fails is tried once more before the ramp stops: a burst of work
    from elsewhere on the machine passes, a limit does not.
    """
    steps: list[Step] = []
    for rate in s.ramp_rates:
        plan = LoadPlan(
            deployment.url,
            clients=s.ramp_clients,
            rooms=max(1, s.ramp_clients // s.ramp_room_size),
            rate=rate,
            duration=s.ramp_seconds,
            processes=2,
            seed=int(rate),
        )
        step = Step([measured_run(deployment, plan)])
        if not step.sustained:
            step.runs.append(measured_run(deployment, plan))
        steps.append(step)
        if not step.sustained:
            break
    return steps


# -- the report ----------------------------------------------------------------------------


def _versions() -> str:
    programs = []
    for name in ("redis-server", "nginx"):
        path = find_program(name)
        programs.append(f"{name} {PROGRAMS[name].version(path) if path else 'missing'}")
    return (
        f"Python {platform.python_version()}, websockets {version('websockets')}, "
        f"redis-py {version('redis')}, {', '.join(programs)}"
    )


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _counts(counts: Any, separator: str = ", ") -> str:
    """``5,001 + 5,000`` from a list, ``1011: 3`` from a mapping, ``none`` from nothing."""
    if isinstance(counts, dict):
        return separator.join(f"{n:,} {why}" for why, n in counts.items()) or "none"
    return separator.join(f"{n:,}" for n in counts) or "none"


def _ephemeral_ports() -> tuple[int, int]:
    """The kernel's range of ports for outgoing connections (Linux)."""
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def _kib(size: float) -> str:
    return "-" if math.isnan(size) else f"{size / 1024:.1f} KiB"


@dataclass
class ScaleReport:
    """Everything one run measured; ``str()`` is the report."""

    quick: bool
    settings: Settings
    versions: str
    load_before: str
    hold: Hold
    fanout: list[FanoutRow]
    ramps: list[list[Step]]
    load_after: str = ""
    elapsed: float = 0.0

    @property
    def added_p50(self) -> float:
        """Seconds the 2-worker Redis room adds at p50 to the one-process memory:// room."""
        by_label = {row.label: row for row in self.fanout}
        return by_label[TWO_WORKERS].percentile(50) - by_label[ONE_PROCESS].percentile(50)

    @staticmethod
    def best(steps: list[Step]) -> Step | None:
        """The step with the highest sustained rate of a ramp (``None``: not even the first)."""
        return max((step for step in steps if step.sustained), key=lambda x: x.rate, default=None)

    def __str__(self) -> str:
        s = self.settings
        lines = [
            "course-ws bench scale" + (" --quick" if self.quick else ""),
            _machine(),
            self.versions,
            f"Load average (1, 5, 15 min) at the start: {self.load_before}; at the end: "
            f"{self.load_after}",
            f"(this run's own load included). Whole run: {self.elapsed:.0f} s.",
            "Loopback only. The chat server as deploy_local runs it: redis-server (append-only,",
            "appendfsync always), workers with --broker redis://, nginx in front (least_conn);",
            f"workers ping every {PING_INTERVAL:g} s (20 s by default) and lift the per-address "
            "limits (load from few addresses).",
            "CPU: share of one core (100%: a core kept busy). The generator: its client "
            "processes and the process",
            "that drives and watches them (this one).",
            "",
            *self._hold_lines(),
            "",
            *self._fanout_lines(),
            "",
            *self._ramp_lines(s),
        ]
        return "\n".join(lines)

    def _hold_lines(self) -> list[str]:
        hold, report = self.hold, self.hold.run.report
        plan, watch, cpu = report.plan, hold.run.watch, hold.run.cpu
        connect = report.to_dict()["connections"]["connect_ms"]
        errors = [line for line in hold.nginx_errors if "[warn]" not in line]
        low, high = _ephemeral_ports()
        lines = [
            f"1. Held connections: {plan.clients:,} chat members in {plan.rooms} rooms of "
            f"{plan.clients // plan.rooms}, through nginx to 2 workers, held {plan.duration:g} s",
            f"   from {plan.processes} client processes bound to {len(report.addresses)} source "
            f"addresses ({report.addresses[0]}-{report.addresses[-1]});",
            "   nginx opens as many connections again to the workers, from 127.0.0.1's "
            "ephemeral ports",
            f"   ({low}-{high}: {high - low + 1:,} for each worker's address and port, which "
            "holds half the clients).",
            f"   dropped        {hold.dropped:,}: connected {report.connected:,}, failed "
            f"{_counts(report.connect_failures)}, closed during the hold "
            f"{_counts(report.close_codes)}",
            f"   still alive    {report.accepted:,} messages ({plan.rate:g}/s, each room every "
            f"{plan.rooms / plan.rate:g} s on average) reached every member:",
            f"                  {report.delivered:,} of {report.expected:,} deliveries owed, "
            f"lost {report.lost:,}",
            f"   keepalive      an observer through nginx got {hold.pings} pings in "
            f"{hold.ping_seconds:.0f} s, answered each"
            + (f" ({hold.observer_error})" if hold.observer_error else "")
            + " (clients: every 20 s)",
            f"   connect time   p50 {connect['p50']:.0f} ms, p95 {connect['p95']:.0f} ms, "
            f"p99 {connect['p99']:.0f} ms (handshake + welcome; 100 at a time per process)",
            f"   workers        {_counts(watch.connections_peak, ' + ')} connections at most; "
            f"RSS {_kib(report.server.per_connection or math.nan)} per connection (both)",
            f"   nginx          RSS {watch.nginx_before / 2**20:.0f} -> "
            f"{watch.nginx_peak / 2**20:.0f} MiB: {_kib(hold.nginx_per_connection)} per client; "
            f"{_counts(watch.nginx_descriptors_peak, ' + ')} files open",
            f"                  in its {len(watch.nginx_descriptors_peak)} workers (limit "
            f"{_counts(hold.nginx_file_limits, ' + ')}); errors logged: {len(errors)}",
            f"   CPU            in % of one core over {cpu.elapsed:.0f} s (connecting and "
            "closing included):",
            f"                  {cpu.by_party()};",
            f"                  {cpu.summary()}",
        ]
        lines.extend(f"   nginx said     {line}" for line in errors[:3])
        return lines

    def _fanout_lines(self) -> list[str]:
        s = self.settings
        rows = []
        for row in self.fanout:
            delivered = sum(run.report.delivered for run in row.runs)
            expected = sum(run.report.expected for run in row.runs)
            rows.append(
                [
                    row.label,
                    row.members_per_worker,
                    f"{delivered:,}/{expected:,}",
                    *(ms(row.percentile(rank)) for rank in (50, 95, 99)),
                ]
            )
        added = self.added_p50 * 1e3
        verdict = "PASS" if added <= ADDED_P50_TARGET_MS else "MISS"
        return [
            f"2. Fan-out added latency: one room of {s.fanout_members} members through nginx, "
            f"{s.fanout_rate:g} msg/s for {s.fanout_seconds:g} s;",
            f"   {s.fanout_rounds} interleaved round(s), pooled. Delivery latency send -> "
            "receipt (ms), every member timed.",
            table(["deployment", "members per worker", "delivered", "p50", "p95", "p99"], rows)
            .replace("\n", "\n   ")
            .join(["   ", ""]),
            f"   added p50, 2 workers via Redis - 1 process memory://: {added:.2f} ms "
            f"(target <= {ADDED_P50_TARGET_MS:g} ms): {verdict}",
        ]

    def _ramp_lines(self, s: Settings) -> list[str]:
        rows = []
        for steps in self.ramps:
            for step in steps:
                run, cpu = step.run, step.run.sending_cpu
                r = run.report
                rows.append(
                    [
                        str(run.workers),
                        f"{step.rate:,.0f}",
                        str(len(step.runs)),
                        ms(latency_percentile(r.latencies, 50, r.expected)),
                        ms(step.p95_ms / 1e3),
                        f"{r.lost:,}",
                        "yes" if step.sustained else "NO",
                        f"{cpu.core_share(cpu.generator):.0%}",
                        " + ".join(f"{cpu.core_share(w):.0%}" for w in cpu.workers),
                        f"{step.worker_cpu_per_message * 1e6:.0f}",
                        f"{cpu.core_share(cpu.nginx):.0%}",
                        f"{cpu.core_share(cpu.redis):.0%}",
                        f"{cpu.core_share(cpu.others):.0%}",
                    ]
                )
        header = [
            "workers",
            "offered",
            "tries",
            "p50",
            "p95",
            "lost",
            "sustained",
            "generator",
            "workers",
            "µs/msg",
            "nginx",
            "redis",
            "others",
        ]
        lines = [
            f"3. Messages per second: {s.ramp_clients} members in rooms of {s.ramp_room_size} "
            f"(each message delivered {s.ramp_room_size} times), {s.ramp_seconds:g} s per rate;",
            f"   a rate is sustained when nothing is lost, refused or late (p95 <= "
            f"{LATENCY_LIMIT_MS:g} ms), in one of two tries.",
            "   Rates in msg/s, latency in ms;",
            f"   CPU in % of one core over the busiest {s.ramp_seconds:g} s of the step (the "
            "sending); µs/msg: workers' CPU per message;",
            "   others: the machine's other processes meanwhile (other work on this machine).",
            table(header, rows).replace("\n", "\n   ").join(["   ", ""]),
        ]
        cores = os.cpu_count() or 1
        for steps in self.ramps:
            workers = steps[0].run.workers
            best = self.best(steps)
            missed = "" if steps[-1].sustained else f", {steps[-1].rate:,.0f} msg/s not"
            if best is None:
                lines.append(f"   {workers} worker(s): no rate sustained{missed}")
                continue
            cpu = best.run.sending_cpu
            lines.append(
                f"   {workers} worker{'s' if workers > 1 else ''}: {best.rate:,.0f} msg/s "
                f"sustained ({best.rate * s.ramp_room_size:,.0f} deliveries/s){missed};"
            )
            lines.append(
                f"      at {best.rate:,.0f} msg/s the parties above used "
                f"{cpu.core_share(cpu.total) / cores:.0%} of the {cores} cores (the generator "
                f"{cpu.generator / cpu.total:.0%} of that), other processes "
                f"{cpu.core_share(cpu.others) / cores:.0%}"
            )
        common = [
            (one, two)
            for one in self.ramps[0]
            for two in self.ramps[-1]
            if one.rate == two.rate and one.sustained and two.sustained
        ]
        if len(self.ramps) == 2 and common:
            one, two = common[-1]
            lines += [
                f"   On {cores} cores the generator, nginx and Redis share the CPU with the "
                "workers: these rates are the",
                "   machine's with its load generator aboard, not what a worker with a core of "
                "its own would do. A second",
                "   worker gets no core of its own, and each message costs the workers more: "
                f"{two.worker_cpu_per_message * 1e6:.0f} µs against "
                f"{one.worker_cpu_per_message * 1e6:.0f} µs",
                f"   at {one.rate:,.0f} msg/s (every message reaches both workers through Redis, "
                "and each decodes it).",
            ]
        return lines


ONE_PROCESS = "1 process, memory://"
ONE_WORKER = "1 worker, redis://"
TWO_WORKERS = "2 workers, redis://"


@contextlib.contextmanager
def _deployed(folder: Path, workers: int, label: str) -> Iterator[Deployment]:
    with deploy_local("chat", workers=workers, directory=folder, **SERVER_OPTIONS) as d:
        yield Deployment(label, d.url, d.workers, d.nginx, d.redis)


def measure(s: Settings, *, quick: bool = False) -> ScaleReport:
    """Start the three deployments, run the three measurements, stop everything."""
    started = time.monotonic()
    load_before = _load()
    raise_open_files_limit()  # before anything starts: the workers and nginx inherit it
    with tempfile.TemporaryDirectory(prefix="course-ws-bench-scale-") as folder:
        base = Path(folder)
        with contextlib.ExitStack() as stack:
            two = stack.enter_context(_deployed(base / "two", 2, TWO_WORKERS))
            one = stack.enter_context(_deployed(base / "one", 1, ONE_WORKER))
            memory = stack.enter_context(
                one_process_behind_nginx(base / "memory", SERVER_OPTIONS, ONE_PROCESS)
            )
            hold = hold_connections(two, s)
            fanout = fanout_latency([memory, one, two], s)
            ramps = [ramp(one, s), ramp(two, s)]
    report = ScaleReport(quick, s, _versions(), load_before, hold, fanout, ramps)
    report.load_after = _load()
    report.elapsed = time.monotonic() - started
    return report


def run(*, quick: bool = False, settings: Settings | None = None) -> ScaleReport:
    """Measure everything (``quick``: 200 connections, short runs) and return the report."""
    return measure(settings or (QUICK if quick else FULL), quick=quick)
