"""Several worker processes serving one server, under a small supervisor.

One Python process runs one event loop on one core. ``course-ws serve NAME
--workers N`` runs N processes of the same server instead, each the course's
own server (``websockets`` or the course's uvicorn host) on a listening socket
that the supervisor bound and handed down (``pass_fds``), as gunicorn and
uvicorn do:

- **One port for all** (the default): every worker accepts from the same
  listening socket, which the supervisor keeps open from start to stop. A
  worker that stops or restarts never makes the port refuse a connection: the
  kernel queues it until another worker accepts it.
- **One port per worker** (``separate_ports=True``, what :mod:`.deploy` puts
  behind nginx): nginx then sees each worker, so ``least_conn`` can balance
  them and a dead worker's port refuses, which sends nginx to the others.

The supervisor restarts a worker that dies (after a pause that doubles while
they keep dying young), forwards SIGTERM so that every client gets 1001, and
on SIGHUP restarts the workers one at a time: each new worker listens on the
old one's socket *before* the old one is asked to stop, so no connection is
refused during a deploy.

Why not ``uvicorn --workers``: its supervisor (``uvicorn/supervisors/multiprocess.py``,
uvicorn 0.54) runs ``uvicorn.Server(config).run()`` in each child
(``Process.target``) and answers its health checks from that server's
``started`` flag (``Process.pong``); stopping a worker sends it SIGTERM,
which that server turns into uvicorn's shutdown, and that writes **1012** to
every WebSocket before the app can say anything (see
:mod:`course_ws.servers._asgi_host`). Using it with the course's host means
overriding ``Process.target`` and ``Process.server``, undocumented internals;
its design (bind once in the parent, spawn, SIGHUP restarts one worker at a
time and waits until the new one is ready) is the one followed here, for every
stack alike.

A worker learns that its supervisor is gone when its *lifeline* pipe reaches
end of file, so a supervisor killed with SIGKILL leaves no orphans serving.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from course_ws.hosting.catalogue import lookup
from course_ws.hosting.listening import BindError, bind_listener, socket_address, url_host
from course_ws.options import BACKLOG, ServeOptions

logger = logging.getLogger("course_ws.hosting.workers")

READY_TIMEOUT = 30.0
"""Seconds a new worker may take to import its stack and listen."""
STOP_MARGIN = 10.0
"""Seconds a stopping worker gets beyond its close timeout before it is killed."""
RESPAWN_PAUSES = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)
"""Pauses before restarting a worker that died, longer each time one dies young."""
YOUNG = 10.0
"""A worker that dies younger than this (seconds) counts towards a longer pause."""
MONITOR_INTERVAL = 0.05


class WorkerFailed(RuntimeError):
    """A worker exited before it listened; the message has the end of its log."""


def memory_broker_warning(options: ServeOptions) -> str | None:
    """The one-line warning for several workers that cannot share rooms, or ``None``."""
    if options.workers > 1 and options.broker.startswith("memory:"):
        return (
            f"{options.workers} workers with --broker memory:// do not share rooms "
            f"(a member on one worker does not hear one on another, and ids differ): "
            f"use --broker redis://HOST:PORT/0"
        )
    return None


@dataclasses.dataclass
class Worker:
    """One worker process and the supervisor's end of its lifeline."""

    slot: int
    process: subprocess.Popen[bytes]
    lifeline: int
    started: float = dataclasses.field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid

    def terminate(self) -> None:
        """SIGTERM: the worker closes every client with 1001 and exits."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        """Wait for the exit (SIGKILL after ``timeout``); its status. Closes the lifeline."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("worker %d (pid %d) did not stop in time: killed", self.slot, self.pid)
            self.process.kill()
            status = self.process.wait(5)
        with contextlib.suppress(OSError):
            os.close(self.lifeline)
        return status


class WorkerPool:
    """``options.workers`` processes of the catalogue server ``name``, supervised.

    :meth:`start` returns once every worker listens; :meth:`restart` replaces
    them one at a time; :meth:`stop` closes every client with 1001 and ends
    them all. ``log`` receives the workers' stderr (``None``: this process's).
    """

    def __init__(
        self,
        name: str,
        options: ServeOptions,
        *,
        separate_ports: bool = False,
        log: Path | None = None,
    ) -> None:
        lookup(name)  # an unknown name fails here, not in N children
        self.name = name
        self.options = options
        self.separate_ports = separate_ports
        self.log = log
        count = options.workers
        if separate_ports:
            self.sockets = [
                bind_listener(options.host, 0 if i else options.port) for i in range(count)
            ]
        else:
            self.sockets = [bind_listener(options.host, options.port)] * count
        self.host, self.port = socket_address(self.sockets[0])
        self.workers: list[Worker | None] = [None] * count
        self.restarts = 0
        """Workers started to replace one that died (not those of a rolling restart)."""
        self._deaths = [0] * count
        self._next_spawn = [0.0] * count
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name=f"workers {name}", daemon=True)
        self._log_file: IO[bytes] | None = None

    # -- what the pool serves ----------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://host:port`` of the shared port (of the first worker with separate ports)."""
        return f"ws://{url_host(self.host)}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{url_host(self.host)}:{self.port}"

    @property
    def addresses(self) -> list[tuple[str, int]]:
        """Each worker's (host, port): one per worker with separate ports, else all alike."""
        return [socket_address(sock) for sock in self.sockets]

    @property
    def pids(self) -> list[int]:
        """The running workers' process ids, by slot (0 where a slot is being refilled)."""
        with self._lock:
            return [worker.pid if worker else 0 for worker in self.workers]

    def __repr__(self) -> str:
        return f"<WorkerPool {self.name} x{len(self.workers)} {self.url}>"

    # -- starting and stopping ---------------------------------------------------

    def start(self) -> WorkerPool:
        """Start every worker and return once they all listen; WorkerFailed if one cannot."""
        if (warning := memory_broker_warning(self.options)) is not None:
            logger.warning("%s", warning)
        if self.log is not None:
            self._log_file = self.log.open("ab")
        try:
            for slot in range(len(self.workers)):
                self.workers[slot] = self._spawn(slot)
        except BaseException:
            self.stop()
            raise
        self._monitor.start()
        return self

    def stop(self) -> None:
        """SIGTERM every worker (each closes its clients with 1001), wait, free the ports."""
        self._stopping.set()
        with self._lock:
            running = [worker for worker in self.workers if worker is not None]
            self.workers = [None] * len(self.workers)
            for worker in running:
                worker.terminate()
            for worker in running:
                worker.wait(self.options.close_timeout + STOP_MARGIN)
            for sock in set(self.sockets):
                sock.close()
        if self._monitor.is_alive() and self._monitor is not threading.current_thread():
            self._monitor.join(5)
        if self._log_file is not None:
            self._log_file.close()

    def restart(self) -> bool:
        """Rolling restart: for each worker, start its replacement on the same socket,
        wait until it listens, then stop the old one (its clients get 1001).

        A replacement that cannot start ends the restart there, the old workers still
        serving (as uvicorn's supervisor does): False, and the reason in the log.
        """
        with self._lock:
            for slot, old in enumerate(self.workers):
                if self._stopping.is_set():
                    return False
                try:
                    new = self._spawn(slot)
                except WorkerFailed as exc:
                    logger.error("%s; the restart stops here, the old workers go on", exc)
                    return False
                self.workers[slot] = new
                if old is not None:
                    old.terminate()
                    old.wait(self.options.close_timeout + STOP_MARGIN)
                logger.info("worker %d restarted: pid %d", slot, new.pid)
        return True

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def run_until_signalled(
        self, on_ready: Callable[[WorkerPool], None] = lambda pool: None
    ) -> None:
        """Start, call ``on_ready``, serve until SIGINT or SIGTERM; SIGHUP: :meth:`restart`."""
        with signals_to_flags() as flags:
            self.start()
            try:
                on_ready(self)
                wait_for_stop(flags, self.restart)
            finally:
                self.stop()

    # -- inside the supervisor ---------------------------------------------------

    def _spawn(self, slot: int) -> Worker:
        """Start the worker of ``slot`` on its socket and wait until it listens."""
        sock = self.sockets[slot]
        ready_read, ready_write = os.pipe()
        lifeline_read, lifeline_write = os.pipe()
        options = json.dumps(dataclasses.asdict(self.options))
        command = [
            sys.executable, "-m", __name__, self.name,
            "--listen-fd", str(sock.fileno()),
            "--ready-fd", str(ready_write),
            "--lifeline-fd", str(lifeline_read),
            "--slot", str(slot),
            "--options", options,
        ]  # fmt: skip
        try:
            process = subprocess.Popen(
                command,
                pass_fds=(sock.fileno(), ready_write, lifeline_read),
                stdin=subprocess.DEVNULL,
                stdout=self._log_file or None,
                stderr=self._log_file or None,
                start_new_session=True,  # Ctrl+C reaches the supervisor, which forwards SIGTERM
            )
        except BaseException:
            for fd in (ready_read, ready_write, lifeline_read, lifeline_write):
                os.close(fd)
            raise
        os.close(ready_write)
        os.close(lifeline_read)
        worker = Worker(slot, process, lifeline_write)
        try:
            said = _read_ready(ready_read, READY_TIMEOUT)
        finally:
            os.close(ready_read)
        if said != b"ready\n":
            worker.terminate()
            status = worker.wait(STOP_MARGIN)
            raise WorkerFailed(
                f"worker {slot} of {self.name} did not start (exit status {status})"
                + (f": {self._log_tail()}" if self.log else "")
            )
        logger.info("worker %d listening: pid %d", slot, process.pid)
        return worker

    def _watch(self) -> None:
        """Restart any worker that exits without being asked to."""
        while not self._stopping.wait(MONITOR_INTERVAL):
            with self._lock:
                for slot, worker in enumerate(self.workers):
                    if self._stopping.is_set():
                        return
                    if worker is not None and worker.process.poll() is not None:
                        self._bury(slot, worker)
                    elif worker is None and time.monotonic() >= self._next_spawn[slot]:
                        self._refill(slot)

    def _bury(self, slot: int, dead: Worker) -> None:
        """A worker exited unasked: free its slot, and pause longer if it died young."""
        status = dead.wait(0)
        young = time.monotonic() - dead.started < YOUNG
        self._deaths[slot] = self._deaths[slot] + 1 if young else 0
        logger.warning("worker %d (pid %d) exited with status %d", slot, dead.pid, status)
        self.workers[slot] = None
        if self.separate_ports:
            # Its own port: refuse while nobody serves it, so that a proxy goes to the others.
            host, port = socket_address(self.sockets[slot])
            self.sockets[slot].close()
            self.sockets[slot] = _bind_quiet(host, port)
        pause = RESPAWN_PAUSES[min(self._deaths[slot], len(RESPAWN_PAUSES) - 1)]
        self._next_spawn[slot] = time.monotonic() + pause

    def _refill(self, slot: int) -> None:
        try:
            self.workers[slot] = self._spawn(slot)
        except WorkerFailed as exc:
            logger.error("%s", exc)
            self._deaths[slot] += 1
            pause = RESPAWN_PAUSES[min(self._deaths[slot], len(RESPAWN_PAUSES) - 1)]
            self._next_spawn[slot] = time.monotonic() + pause
        else:
            self.restarts += 1

    def _log_tail(self, size: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:] if self.log else ""
        except OSError:
            return ""


def _read_ready(fd: int, timeout: float) -> bytes:
    """The worker's ``ready`` line, or what it said before closing (b'' if it died first)."""
    deadline = time.monotonic() + timeout
    said = b""
    while not said.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return said
        chunk = os.read(fd, 64)
        if not chunk:
            return said
        said += chunk
    return said


def _bind_quiet(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` but not listening: connections are refused until the
    worker it goes to calls ``listen()``, once it is ready to serve."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(
                exc.errno, f"port {port} was taken while its worker restarted"
            ) from None
        raise
    return sock


# -- signals, for the command line ------------------------------------------------


@dataclasses.dataclass
class SignalFlags:
    """What the signals asked for since the last look."""

    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    restart: threading.Event = dataclasses.field(default_factory=threading.Event)


@contextlib.contextmanager
def signals_to_flags() -> Iterator[SignalFlags]:
    """SIGINT and SIGTERM set ``stop``, SIGHUP sets ``restart``; old handlers come back after."""
    flags = SignalFlags()
    handlers: dict[signal.Signals, Callable[[], None]] = {
        signal.SIGINT: flags.stop.set,
        signal.SIGTERM: flags.stop.set,
        signal.SIGHUP: flags.restart.set,
    }
    previous = {
        signum: signal.signal(signum, lambda s, f: handlers[signal.Signals(s)]())
        for signum in handlers
    }
    try:
        yield flags
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def wait_for_stop(flags: SignalFlags, restart: Callable[[], object]) -> None:
    """Block until ``flags.stop``; call ``restart`` each time ``flags.restart`` is set."""
    while not flags.stop.wait(0.2):
        if flags.restart.is_set():
            flags.restart.clear()
            logger.warning("SIGHUP: restarting the workers one at a time")
            restart()


@contextlib.contextmanager
def serve_workers(
    name: str,
    /,
    *,
    separate_ports: bool = False,
    log: Path | None = None,
    **options: Any,
) -> Iterator[WorkerPool]:
    """Run ``options['workers']`` processes of server ``name`` for the ``with`` block.

    ``options`` are :class:`~course_ws.options.ServeOptions` fields (``workers=2``,
    ``broker=...``). The workers' logs go to ``log`` (a temporary file if
    ``None``, so that nothing reaches a notebook cell).
    """
    with contextlib.ExitStack() as stack:
        if log is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="course-ws-workers-"))
            log = Path(folder) / "workers.log"
        pool = WorkerPool(name, ServeOptions(**options), separate_ports=separate_ports, log=log)
        stack.enter_context(pool)
        yield pool.start()


# -- inside a worker ---------------------------------------------------------------


async def _serve_worker(
    name: str, options: ServeOptions, sock: socket.socket, ready: int, lifeline: int
) -> None:
    sock.listen(BACKLOG)  # a socket bound quietly after a death starts accepting now
    running = await lookup(name).load()(options, sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    loop.add_reader(lifeline, stop.set)  # end of file: the supervisor is gone
    os.write(ready, b"ready\n")
    os.close(ready)
    await stop.wait()
    loop.remove_reader(lifeline)
    await running.aclose()


def main(argv: Sequence[str] | None = None) -> int:
    """One worker: ``python -m course_ws.hosting.workers NAME --listen-fd ...`` (the supervisor
    runs it; not a command for people)."""
    parser = argparse.ArgumentParser(prog="course-ws worker")
    parser.add_argument("name")
    for flag in ("--listen-fd", "--ready-fd", "--lifeline-fd", "--slot"):
        parser.add_argument(flag, type=int, required=True)
    parser.add_argument("--options", required=True)
    args = parser.parse_args(argv)
    fields = json.loads(args.options)
    fields["trusted_proxy"] = tuple(fields["trusted_proxy"])
    options = ServeOptions(**fields)
    from course_ws.hosting.logs import LOG_FORMAT

    logging.basicConfig(
        level=options.log_level.upper(),
        format=LOG_FORMAT.replace("%(name)s", f"worker {args.slot} [%(process)d] %(name)s"),
        stream=sys.stderr,
    )
    sock = socket.socket(fileno=args.listen_fd)
    sock.setblocking(False)
    from course_ws.chat.brokers import BrokerUnavailable

    try:
        asyncio.run(_serve_worker(args.name, options, sock, args.ready_fd, args.lifeline_fd))
    except BrokerUnavailable as exc:
        print(f"course-ws worker {args.slot}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
