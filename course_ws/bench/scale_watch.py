"""What ``course-ws bench scale`` watches around a load run: who used the CPU, memory, pings.

The load generator (:func:`course_ws.load.run_load_test`) reports what its
clients saw. A deployment on one machine also needs the other side's figures:

- :class:`Deployment`: the running parts (workers, nginx, Redis or none) and
  their process ids, whether :func:`~course_ws.hosting.deploy.deploy_local`
  started them or :func:`one_process_behind_nginx` did;
- :class:`CpuMeter`: CPU seconds used during a run by the generator's client
  processes, each worker, nginx and Redis, from the kernel's accounting;
- :class:`Watcher`: a thread sampling nginx's memory and each worker's open
  connections (its own ``/metrics``) while the run goes on;
- :class:`PingObserver`: one more client, on a raw socket, that counts the
  keepalive pings the server sends through nginx, and answers each.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import threading
import time
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course_ws.clients.metrics import get_metrics
from course_ws.clients.raw import ConnectionClosed, RawClient
from course_ws.hosting.listening import url_host
from course_ws.hosting.nginx import NginxServer, render_nginx_conf
from course_ws.hosting.redis_server import RedisServer, free_loopback_port
from course_ws.hosting.workers import WorkerPool
from course_ws.load.system import CLOCK_TICKS, cpu_seconds, process_tree, resident_bytes
from course_ws.options import ServeOptions
from course_ws.rfc6455 import HandshakeError, Opcode, ProtocolError

PROXY = "127.0.0.1"
"""Where nginx connects to the workers from (as in :mod:`course_ws.hosting.deploy`)."""


def machine_cpu_seconds() -> float:
    """CPU time the whole machine has been busy so far, all cores together (``/proc/stat``)."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclass
class Deployment:
    """The chat server's running parts: ``label`` names them in the report."""

    label: str
    url: str
    pool: WorkerPool
    nginx: NginxServer
    redis: RedisServer | None

    @property
    def worker_pids(self) -> list[int]:
        return self.pool.pids

    @property
    def worker_urls(self) -> list[str]:
        """Each worker's own ``http://`` address, behind nginx (for its ``/metrics``)."""
        return [f"http://{url_host(host)}:{port}" for host, port in self.pool.addresses]

    @property
    def nginx_pids(self) -> list[int]:
        """nginx's master and worker process."""
        process = self.nginx.process
        return process_tree(process.pid) if process is not None else []

    @property
    def redis_pids(self) -> list[int]:
        process = self.redis.process if self.redis is not None else None
        return [process.pid] if process is not None else []


@contextlib.contextmanager
def one_process_behind_nginx(
    folder: Path, options: dict[str, Any], label: str
) -> Iterator[Deployment]:
    """One ``chat`` worker with ``--broker memory://`` behind nginx, as ``deploy_local`` puts
    its workers (own port, ``least_conn``, X-Forwarded-For trusted), but with no Redis."""
    folder.mkdir(parents=True, exist_ok=True)
    worker_options = ServeOptions(
        **options, host=PROXY, port=0, trusted_proxy=(PROXY,), workers=1, broker="memory://"
    )
    with WorkerPool(
        "chat", worker_options, separate_ports=True, log=folder / "workers.log"
    ) as pool:
        pool.start()
        listen = free_loopback_port()
        config = render_nginx_conf(
            pool.addresses, (PROXY, listen), ping_interval=worker_options.ping_interval
        )
        nginx = NginxServer(folder / "nginx", config, listen).start()
        try:
            yield Deployment(label, nginx.url, pool, nginx, None)
        finally:
            nginx.stop_accepting()  # deploy_local's order: every client hears 1001
            pool.stop()
            nginx.stop()


def generator_cpu_seconds() -> float:
    """CPU time of the load generator so far: this process (which drives the client
    processes and watches the run) and its children that have ended and been waited for
    (the client processes: the only ones that end during a run)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    ended = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + ended.ru_utime + ended.ru_stime


def client_processes() -> list[int]:
    """The load generator's running client processes: this process's ``multiprocessing``
    children (the servers it started are ``nginx``, ``redis-server`` and ``python -m``)."""
    found = []
    for pid in process_tree(os.getpid())[1:]:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing" in command:
            found.append(pid)
    return found


@dataclass(frozen=True)
class CpuUse:
    """CPU seconds used during one run by each party, and the run's wall-clock seconds."""

    elapsed: float
    generator: float
    workers: tuple[float, ...]
    nginx: float
    redis: float
    machine: float
    """Every process of the machine, these parties included."""

    @property
    def others(self) -> float:
        """What other processes of the machine used meanwhile (other work, other tests)."""
        return max(0.0, self.machine - self.total)

    @property
    def server(self) -> float:
        """The deployment's part: workers, nginx and Redis."""
        return sum(self.workers) + self.nginx + self.redis

    @property
    def total(self) -> float:
        return self.generator + self.server

    def core_share(self, seconds: float) -> float:
        """``seconds`` of CPU as a share of one core over the run (1.0: a core kept busy)."""
        return seconds / self.elapsed if self.elapsed > 0 else float("nan")

    def by_party(self) -> str:
        """``generator 46%, workers 20% + 20%, nginx 10%, redis 1%``: shares of one core."""
        share = self.core_share
        workers = " + ".join(f"{share(w):.0%}" for w in self.workers)
        return (
            f"generator {share(self.generator):.0%}, workers {workers}, "
            f"nginx {share(self.nginx):.0%}, redis {share(self.redis):.0%}; "
            f"other processes {share(self.others):.0%}"
        )

    def summary(self) -> str:
        """The generator's part of the CPU spent, and how busy the machine's cores were."""
        cores = os.cpu_count() or 1
        part = self.generator / self.total if self.total else math.nan
        return (
            f"the generator used {part:.0%} of the CPU spent; these parties together kept "
            f"the {cores} cores {self.core_share(self.total) / cores:.0%} busy"
        )


class CpuMeter:
    """``with CpuMeter(deployment) as meter: run_load_test(...)``, then ``meter.use``.

    Totals from the kernel's accounting: a client process that has ended still counts.
    """

    def __init__(self, deployment: Deployment) -> None:
        self.workers = [process_tree(pid) for pid in deployment.worker_pids]
        self.nginx = deployment.nginx_pids
        self.redis = deployment.redis_pids
        self.use: CpuUse | None = None

    def _read(self) -> tuple[float, float, list[float], float, float, float]:
        return (
            time.monotonic(),
            generator_cpu_seconds(),
            [cpu_seconds(pids) for pids in self.workers],
            cpu_seconds(self.nginx),
            cpu_seconds(self.redis),
            machine_cpu_seconds(),
        )

    def __enter__(self) -> CpuMeter:
        self._before = self._read()
        return self

    def __exit__(self, *exc_info: object) -> None:
        after, before = self._read(), self._before
        self.use = CpuUse(
            elapsed=after[0] - before[0],
            generator=after[1] - before[1],
            workers=tuple(a - b for a, b in zip(after[2], before[2], strict=True)),
            nginx=after[3] - before[3],
            redis=after[4] - before[4],
            machine=after[5] - before[5],
        )


@dataclass(frozen=True)
class CpuSample:
    """CPU seconds used so far by each party, ``at`` a :func:`time.monotonic` instant."""

    at: float
    generator: float
    workers: tuple[float, ...]
    nginx: float
    redis: float
    machine: float


@dataclass
class Watch:
    """What :class:`Watcher` saw: nginx's memory and each worker's connections, at most."""

    nginx_before: int = 0
    nginx_peak: int = 0
    connections_peak: list[int] = field(default_factory=list)
    """The most open WebSocket connections each worker reported (its ``/metrics``)."""
    nginx_descriptors_peak: list[int] = field(default_factory=list)
    """The most open files each nginx worker process had (``/proc/PID/fd``)."""
    cpu: list[CpuSample] = field(default_factory=list)
    """CPU seconds used so far by each party, at each sample."""

    def busiest(self, seconds: float) -> CpuUse | None:
        """CPU use over the ``seconds``-long stretch of samples when the server side (the
        workers, nginx and Redis) used the most: the sending of a run, without the client
        processes' start (imports), their connecting and their closing."""
        best: CpuUse | None = None
        samples = self.cpu
        for start, first in enumerate(samples):
            last = next((s for s in samples[start:] if s.at - first.at >= seconds), None)
            if last is None:
                break
            use = CpuUse(
                elapsed=last.at - first.at,
                generator=max(0.0, last.generator - first.generator),  # a client may end
                workers=tuple(b - a for a, b in zip(first.workers, last.workers, strict=True)),
                nginx=last.nginx - first.nginx,
                redis=last.redis - first.redis,
                machine=last.machine - first.machine,
            )
            if best is None or use.server / use.elapsed > best.server / best.elapsed:
                best = use
        return best


class Watcher:
    """A thread sampling ``deployment`` every ``interval`` seconds while a run goes on."""

    def __init__(self, deployment: Deployment, interval: float = 0.5) -> None:
        self.deployment = deployment
        self.interval = interval
        self.nginx_workers = deployment.nginx_pids[1:]  # the master's children
        self.workers = [process_tree(pid) for pid in deployment.worker_pids]
        self.watch = Watch(
            connections_peak=[0] * len(deployment.worker_urls),
            nginx_descriptors_peak=[0] * len(self.nginx_workers),
        )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scale watcher", daemon=True)

    def _sample(self) -> None:
        watch = self.watch
        own = resource.getrusage(resource.RUSAGE_SELF)
        watch.cpu.append(
            CpuSample(
                at=time.monotonic(),
                generator=own.ru_utime + own.ru_stime + cpu_seconds(client_processes()),
                workers=tuple(cpu_seconds(pids) for pids in self.workers),
                nginx=cpu_seconds(self.deployment.nginx_pids),
                redis=cpu_seconds(self.deployment.redis_pids),
                machine=machine_cpu_seconds(),
            )
        )
        with contextlib.suppress(OSError):  # nginx's worker may be between two states
            watch.nginx_peak = max(watch.nginx_peak, resident_bytes(self.deployment.nginx_pids))
            for index, pid in enumerate(self.nginx_workers):
                files = len(os.listdir(f"/proc/{pid}/fd"))
                peaks = watch.nginx_descriptors_peak
                peaks[index] = max(peaks[index], files)
        for index, url in enumerate(self.deployment.worker_urls):
            try:
                open_now = get_metrics(url, timeout=2.0).get("course_ws_connections", 0)
            except (OSError, urllib.error.URLError, ValueError):
                continue  # a busy worker answers late: the next sample will do
            watch.connections_peak[index] = max(watch.connections_peak[index], int(open_now))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> Watcher:
        self.watch.nginx_before = resident_bytes(self.deployment.nginx_pids)
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self._sample()


class PingObserver:
    """A client of its own room, through nginx, that counts the server's pings (a thread).

    The load generator's clients answer pings inside ``websockets`` without a
    trace; this one reads every frame on a raw socket (:class:`RawClient`), so
    the pings that kept its connection alive are counted, not assumed.
    """

    def __init__(self, url: str, room: str = "scale-observer") -> None:
        self.url = f"{url}/chat/{room}?user=observer"
        self.pings = 0
        self.seconds = 0.0
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ping observer", daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        try:
            with RawClient.connect(self.url, timeout=5.0) as client:
                client.timeout = 0.5
                while not self._stop.is_set():
                    try:
                        frame = client.recv_frame()
                    except TimeoutError:
                        continue
                    if frame.opcode is Opcode.PING:
                        self.pings += 1
                        client.send_frame(Opcode.PONG, frame.payload)
                    elif frame.opcode is Opcode.CLOSE:
                        self.error = "the server closed the observer's connection"
                        return
        except (OSError, ConnectionClosed, HandshakeError, ProtocolError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.seconds = time.monotonic() - started

    def __enter__(self) -> PingObserver:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(15)
