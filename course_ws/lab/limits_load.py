"""Notebook 06b's load test: latency vs clients, 1 vs 2 workers over real Redis, who used the CPU.

    >>> points = load_sweep(clients=(100, 500), workers=(1, 2), duration=1.0)
    >>> points[0].latency_ms["p50"], points[0].cpu.generator_share

:func:`load_sweep` starts a real ``redis-server`` and, for each worker count,
the ``chat`` server as that many worker processes (``--broker redis://``),
then runs :func:`course_ws.load.run_load_test` once per client count. Every
member talks at the same rate and every room has the same size, so the work
grows with the clients: ``clients × rate`` messages per second in, ``× room_size``
deliveries out.

On one machine the load generator competes with the server for the same cores,
so every point also says who used the CPU during its run (:class:`CpuUse`),
read from the kernel's accounting: the server's worker processes and Redis
from ``/proc/PID/stat``, the generator's client processes from the resources
of this process's finished children (``getrusage(RUSAGE_CHILDREN)``; they are
the only children that end during a run) plus the calling thread.
"""

from __future__ import annotations

import contextlib
import os
import resource
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from course_ws.bench import ONE_ADDRESS_CROWD
from course_ws.hosting.redis_server import RedisServer, run_redis
from course_ws.hosting.workers import WorkerPool, serve_workers
from course_ws.load import LoadPlan, LoadReport, run_load_test
from course_ws.load.system import cpu_seconds, process_tree


def children_cpu_seconds() -> float:
    """CPU time used by this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds used during one run, by party, and the run's wall-clock time."""

    generator: float
    """The client processes (their start-up included) and the thread that ran them."""
    server: float
    """Every worker process of the server."""
    redis: float
    elapsed: float
    cores: int

    @property
    def total(self) -> float:
        return self.generator + self.server + self.redis

    @property
    def generator_share(self) -> float:
        """The generator's part of all the CPU time the run used (0 to 1)."""
        return self.generator / self.total if self.total else 0.0

    @property
    def busy(self) -> float:
        """How much of the machine's cores the run kept busy on average (0 to 1)."""
        return self.total / (self.elapsed * self.cores)


@dataclass(frozen=True)
class CpuSample:
    """Cores in use by each party over the last sampling interval, ``at`` seconds into the run."""

    at: float
    generator: float
    server: float
    redis: float


class CpuSampler:
    """Samples, every ``interval`` seconds in a thread of its own, how many cores the
    generator's client processes (every child of this process but the server's and
    Redis), the server and Redis are using."""

    def __init__(self, server: list[int], redis: list[int], interval: float = 0.1) -> None:
        self.server = server
        self.redis = redis
        self.interval = interval
        self.samples: list[CpuSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cpu sampler", daemon=True)

    def _generator_pids(self) -> list[int]:
        known = set(self.server) | set(self.redis)
        return [pid for pid in process_tree(os.getpid())[1:] if pid not in known]

    def _read(self) -> tuple[float, float, float, float]:
        generator = cpu_seconds(self._generator_pids())
        return time.monotonic(), generator, cpu_seconds(self.server), cpu_seconds(self.redis)

    def _run(self) -> None:
        start = previous = self._read()
        # A client process that ends takes its last interval with it: the totals come
        # from the kernel's accounting instead (CpuUse), the samples show the shape.
        while not self._stop.wait(self.interval):
            now = self._read()
            elapsed = now[0] - previous[0]
            generator, server, redis = (
                max(0.0, (now[i] - previous[i]) / elapsed) for i in (1, 2, 3)
            )
            self.samples.append(CpuSample(now[0] - start[0], generator, server, redis))
            previous = now

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class LoadPoint:
    """One load run: its size, and what it measured."""

    workers: int
    clients: int
    rooms: int
    rate: float
    """Messages per second, all senders together."""
    report: LoadReport
    cpu: CpuUse
    timeline: list[CpuSample]
    """Cores in use by each party during the run, every tenth of a second."""

    @property
    def latency_ms(self) -> dict[str, float]:
        """Delivery latency percentiles (``p50``, ``p95``, ``p99``) in milliseconds."""
        figures: dict[str, float] = self.report.to_dict()["latency_ms"]
        return figures

    @property
    def memory_per_connection(self) -> float | None:
        """Bytes of server memory (all workers' RSS) per connection, ``None`` if unknown."""
        return self.report.server.per_connection

    @property
    def clean(self) -> bool:
        """Every client connected and stayed, every message accepted, none lost or doubled."""
        report = self.report
        return (
            report.connected == self.clients
            and not report.close_codes
            and report.sent == report.accepted
            and report.unanswered == 0
            and report.lost == 0
            and report.duplicated == 0
        )

    def __str__(self) -> str:
        latency = self.latency_ms
        memory = self.memory_per_connection
        return (
            f"{self.workers} worker{'s' if self.workers > 1 else ' '} {self.clients:>5,} clients "
            f"{self.rate:>6,.0f} msg/s: p50 {latency['p50']:.1f} ms, p95 {latency['p95']:.1f} ms, "
            f"p99 {latency['p99']:.1f} ms; "
            f"{'?' if memory is None else f'{memory / 1024:.1f}'} KiB/connection; "
            f"CPU s: generator {self.cpu.generator:.2f}, server {self.cpu.server:.2f}, "
            f"redis {self.cpu.redis:.2f} (generator {self.cpu.generator_share:.0%})"
        )


def measure_point(
    pool: WorkerPool,
    redis: RedisServer,
    clients: int,
    *,
    rate_per_client: float,
    room_size: int,
    duration: float,
    processes: int = 2,
    seed: int | None = None,
) -> LoadPoint:
    """One load run of ``clients`` members in rooms of ``room_size`` against ``pool``."""
    rooms = max(1, clients // room_size)
    rate = clients * rate_per_client
    plan = LoadPlan(
        pool.url,
        clients=clients,
        rooms=rooms,
        rate=rate,
        duration=duration,
        processes=processes,
        seed=seed,
    )
    server_pids = [pid for worker in pool.pids for pid in process_tree(worker)]
    redis_pids = [redis.process.pid] if redis.process else []
    server_before, redis_before = cpu_seconds(server_pids), cpu_seconds(redis_pids)
    children_before, thread_before = children_cpu_seconds(), time.thread_time()
    started = time.monotonic()
    with CpuSampler(server_pids, redis_pids) as sampler:
        report = run_load_test(plan, server_pids=pool.pids)
    cpu = CpuUse(
        generator=children_cpu_seconds() - children_before + time.thread_time() - thread_before,
        server=cpu_seconds(server_pids) - server_before,
        redis=cpu_seconds(redis_pids) - redis_before,
        elapsed=time.monotonic() - started,
        cores=os.cpu_count() or 1,
    )
    return LoadPoint(pool.options.workers, clients, rooms, rate, report, cpu, sampler.samples)


@contextlib.contextmanager
def redis_for_load(directory: Path | None = None) -> Iterator[RedisServer]:
    """A real ``redis-server`` for a sweep, without an append-only file (nothing to keep)."""
    with run_redis(directory, appendonly=False) as redis:
        yield redis


def load_sweep(
    clients: Sequence[int] = (100, 500, 1000),
    workers: Sequence[int] = (1, 2),
    *,
    rate_per_client: float = 1.5,
    room_size: int = 10,
    duration: float = 1.0,
    seed: int | None = 6,
) -> list[LoadPoint]:
    """Run every client count against the ``chat`` server with each worker count, all
    workers sharing one real Redis; everything is stopped before it returns.

    Each run has fresh workers, so that their memory growth is that run's alone
    (a process keeps the memory a previous run made it allocate, and reuses it).

    The servers' per-address limits are lifted (:data:`~course_ws.bench.ONE_ADDRESS_CROWD`):
    a load generator's clients come from a handful of addresses, real users from many.
    """
    points: list[LoadPoint] = []
    with (
        tempfile.TemporaryDirectory(prefix="course-ws-06b-") as folder,
        redis_for_load(Path(folder) / "redis") as redis,
    ):
        for count in workers:
            for number in clients:
                with serve_workers(
                    "chat",
                    workers=count,
                    broker=redis.url,
                    log_level="warning",
                    log=Path(folder) / f"workers-{count}.log",
                    **ONE_ADDRESS_CROWD,
                ) as pool:
                    points.append(
                        measure_point(
                            pool,
                            redis,
                            number,
                            rate_per_client=rate_per_client,
                            room_size=room_size,
                            duration=duration,
                            seed=seed,
                        )
                    )
    return points
