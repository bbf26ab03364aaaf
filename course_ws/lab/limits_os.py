"""Notebook 06b's operating-system limits, read and shown live without changing any setting.

- :func:`sysctl` reads a kernel setting from ``/proc/sys`` (what ``sysctl NAME`` prints);
- :func:`serve_with_open_files_limit` starts a catalogue server in a child process
  whose ``RLIMIT_NOFILE`` is lowered, soft and hard (a server raises its soft
  limit to the hard one), so that "Too many open files" comes after a few dozen
  connections instead of thousands;
- :func:`listen_queue` and :func:`fill_backlog` show a listening socket's
  accept queue (``ss``'s ``Recv-Q``/``Send-Q``), and what a client sees once it is full;
- :func:`socket_buffers` measures what idle and full TCP connections cost the
  kernel in buffers (``ss -tm``), as opposed to the server's Python objects.

Everything here is Linux (``/proc``, ``ss``); each function returns ``None``
where the information is not available, and never writes a setting.
"""

from __future__ import annotations

import contextlib
import errno
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from course_ws.hosting.redis_server import free_loopback_port

START_TIMEOUT = 20.0
"""Seconds the limited server may take to listen."""

_LIMITED_SERVER = """\
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
from course_ws.cli import main
sys.exit(main(sys.argv[2:]))
"""
"""What ``prlimit --nofile=LIMIT:LIMIT course-ws serve ...`` does, in Python (or ``ulimit -n
LIMIT`` in a shell, which sets both): lower this process's soft and hard limits, then run
the command line. Children inherit the limits."""


def sysctl(name: str) -> str | None:
    """The value of kernel setting ``name`` (``net.core.somaxconn``), read from
    ``/proc/sys/net/core/somaxconn``; ``None`` where it cannot be read."""
    try:
        return Path("/proc/sys", *name.split(".")).read_text().strip()
    except OSError:
        return None


def port_range() -> tuple[int, int] | None:
    """``net.ipv4.ip_local_port_range``: the ports the kernel picks from for outgoing
    connections (the *ephemeral* ports), as ``(first, last)``."""
    value = sysctl("net.ipv4.ip_local_port_range")
    if value is None:
        return None
    first, last = map(int, value.split())
    return first, last


def _ss() -> str | None:
    """Where ``ss`` (iproute2) is, if installed."""
    return shutil.which("ss") or shutil.which("ss", path="/usr/sbin:/sbin")


# -- file descriptors -------------------------------------------------------------


@dataclass
class LimitedServer:
    """A catalogue server in a child process with a lowered open-files limit."""

    url: str
    process: subprocess.Popen[str]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def open_files(self) -> int | None:
        """How many file descriptors the server has open now (``/proc/PID/fd``)."""
        try:
            return len(list(Path(f"/proc/{self.pid}/fd").iterdir()))
        except OSError:
            return None

    def soft_limit(self) -> int | None:
        """The server's soft limit of open files, read from ``/proc/PID/limits``."""
        try:
            limits = Path(f"/proc/{self.pid}/limits").read_text()
        except OSError:
            return None
        found = re.search(r"^Max open files\s+(\d+)", limits, re.MULTILINE)
        return int(found[1]) if found else None

    def log_text(self) -> str:
        """Everything the server has logged so far."""
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def serve_with_open_files_limit(
    name: str = "chat", limit: int = 40, *, directory: Path | None = None
) -> Iterator[LimitedServer]:
    """``course-ws serve NAME`` on a free loopback port, its ``RLIMIT_NOFILE`` at ``limit``;
    its log goes to a file, and it is stopped (SIGTERM, then SIGKILL) when the block ends."""
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="course-ws-")))
        log = directory / "server.log"
        port = free_loopback_port()
        command = [sys.executable, "-c", _LIMITED_SERVER, str(limit), "serve", name]
        command += ["--port", str(port), "--log-level", "warning"]
        with log.open("w") as log_file:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                text=True,
                start_new_session=True,
            )
        stack.callback(_stop, process)
        server = LimitedServer(f"ws://127.0.0.1:{port}", process, log)
        _wait_listening(server, port)
        yield server


def _wait_listening(server: LimitedServer, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if server.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the server did not start: {server.log_text()[-1500:]}"
                ) from None
            time.sleep(0.05)


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def open_files_limits() -> tuple[int, int]:
    """This process's ``RLIMIT_NOFILE`` as ``(soft, hard)``."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# -- the listen backlog -----------------------------------------------------------


@dataclass(frozen=True)
class ListenQueue:
    """A listening socket's accept queue: connections waiting for ``accept()``, and the most
    it holds (the backlog the program asked for, capped at ``net.core.somaxconn``)."""

    queued: int
    backlog: int


def listen_queue(port: int, host: str = "127.0.0.1") -> ListenQueue | None:
    """The accept queue of the socket listening on ``host:port``, from ``ss -ltn``
    (``Recv-Q``: queued, ``Send-Q``: backlog); ``None`` without ``ss`` or such a socket."""
    ss = _ss()
    if ss is None:
        return None
    done = subprocess.run(
        [ss, "-ltnH", f"src {host}:{port}"], capture_output=True, text=True, timeout=10
    )
    for line in done.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[0] == "LISTEN" and fields[3].endswith(f":{port}"):
            return ListenQueue(int(fields[1]), int(fields[2]))
    return None


@dataclass(frozen=True)
class Attempt:
    """One connection attempt to a listener that never accepts."""

    number: int
    outcome: str
    """``connected`` (the kernel finished the TCP handshake and queued it) or why not."""
    seconds: float
    queue: ListenQueue | None


def fill_backlog(backlog: int = 4, attempts: int = 8, timeout: float = 0.3) -> list[Attempt]:
    """Open ``attempts`` connections, one after the other, to a socket that listens with
    ``backlog`` and never calls ``accept()``; every socket is closed before returning."""
    attempts_made: list[Attempt] = []
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(backlog)
        port = listener.getsockname()[1]
        for number in range(1, attempts + 1):
            client = stack.enter_context(socket.socket())
            client.settimeout(timeout)
            started = time.monotonic()
            try:
                client.connect(("127.0.0.1", port))
                outcome = "connected"
            except TimeoutError:
                outcome = "timed out (SYN unanswered)"
            except OSError as exc:
                outcome = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            attempts_made.append(
                Attempt(number, outcome, time.monotonic() - started, listen_queue(port))
            )
    return attempts_made


def granted_backlog(asked: int) -> int | None:
    """The backlog the kernel grants a socket that asks ``listen(asked)`` (``ss``'s Send-Q)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(asked)
        queue = listen_queue(listener.getsockname()[1])
    return None if queue is None else queue.backlog


# -- kernel memory per connection -------------------------------------------------


def tcp_buffer_memory(port: int) -> int | None:
    """Bytes of socket buffers the kernel holds for every TCP connection to or from
    ``port`` on this machine: received data not yet read (``skmem`` ``r``) plus data
    queued for sending (``w``), from ``ss -tm``; ``None`` without ``ss``."""
    ss = _ss()
    if ss is None:
        return None
    done = subprocess.run(
        [ss, "-tmnH", f"( sport = :{port} or dport = :{port} )"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    total = 0
    for memory in re.finditer(r"skmem:\(r(\d+),.*?,w(\d+),", done.stdout):
        total += int(memory[1]) + int(memory[2])
    return total


@dataclass(frozen=True)
class SocketBuffers:
    """Kernel buffer memory of ``pairs`` loopback connections (both ends together):
    idle, and with ``sent`` bytes written into each and not read."""

    pairs: int
    sent: int
    idle: int
    full: int

    @property
    def idle_per_connection(self) -> float:
        return self.idle / self.pairs

    @property
    def full_per_connection(self) -> float:
        return self.full / self.pairs


def socket_buffers(pairs: int = 200, sent: int = 64 * 1024) -> SocketBuffers | None:
    """Open ``pairs`` loopback TCP connections (both ends in this process), measure their
    buffers' memory (:func:`tcp_buffer_memory`), write ``sent`` bytes into each without
    reading, measure again, and close them all. ``None`` without ``ss``."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(pairs)
        port = listener.getsockname()[1]
        ends: list[socket.socket] = []
        for _ in range(pairs):
            client = stack.enter_context(socket.create_connection(listener.getsockname()))
            stack.enter_context(listener.accept()[0])  # held open, never read
            ends.append(client)
        idle = tcp_buffer_memory(port)
        chunk = b"x" * sent
        for client in ends:
            client.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                client.send(chunk)
        full = tcp_buffer_memory(port)
    if idle is None or full is None:
        return None
    return SocketBuffers(pairs, sent, idle, full)
