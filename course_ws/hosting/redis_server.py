"""A real ``redis-server`` on a free loopback port, for the tests and the notebooks of chapter 06.

    >>> with run_redis(tmp_path) as redis:
    ...     print(redis.url)
    redis://127.0.0.1:PORT/0
    ...     redis.restart()  # same port, same folder: what it accepted is still there

The server runs in the foreground of a child process, bound to 127.0.0.1 only,
with its files (append-only file, log) in the given folder. By default it
keeps what it accepted across its own restart: the append-only file is on
(``appendonly yes``) and written through on every write (``appendfsync
always``), so even a ``kill -9`` loses nothing that was acknowledged; snapshots
are off. ``appendonly=False`` starts a Redis that remembers nothing across a
restart, to show what that loses.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from course_ws.hosting.programs import ends_with_this_process, find_program

START_TIMEOUT = 10.0
"""Seconds ``redis-server`` may take to answer PING (loading a big append-only file included)."""
STOP_TIMEOUT = 10.0
"""Seconds it may take to shut down after SIGTERM before it is killed."""


class RedisNotInstalled(FileNotFoundError):
    """``redis-server`` is not on this machine; the message says how to install it."""


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(port: int, timeout: float = 1.0) -> bool:
    """Whether a Redis on ``127.0.0.1:port`` answers ``PING`` with ``PONG`` (not ``LOADING``)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port`` keeping its files in ``directory``.

    :meth:`start`, :meth:`stop` (SIGTERM: Redis flushes and exits), :meth:`kill`
    (SIGKILL: a crash) and :meth:`restart` keep the port and the folder, so
    clients reconnect to the same URL and find what was persisted.
    """

    def __init__(
        self,
        directory: Path,
        *,
        port: int = 0,
        appendonly: bool = True,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        executable = find_program("redis-server")
        if executable is None:
            raise RedisNotInstalled(
                "redis-server is not installed: apt-get install redis-server "
                "(or conda install -c conda-forge redis-server)"
            )
        self.executable = executable
        self.directory = Path(directory)
        self.port = port or free_loopback_port()
        self.appendonly = appendonly
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``: what ``--broker`` takes."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        """The server's own log file."""
        return self.directory / "redis.log"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        """The ``redis-server`` command line."""
        return [
            str(self.executable),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--protected-mode", "yes",
            "--dir", str(self.directory),
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "always",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log),
            "--loglevel", "warning",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout: float = START_TIMEOUT) -> RedisServer:
        """Start the server and return once it answers PING; RuntimeError with its log if not."""
        if self.running:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=ends_with_this_process(),  # no orphan when this process is killed
            start_new_session=True,  # a Ctrl+C in the notebook does not reach it
        )
        deadline = time.monotonic() + timeout
        while not ping(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._end(signal.SIGKILL)
                raise RuntimeError(
                    f"redis-server did not start on 127.0.0.1:{self.port}: {self.log_tail()}"
                )
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM: Redis finishes writing its append-only file and exits. Idempotent."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, no chance to flush (``appendfsync always`` has flushed already)."""
        self._end(signal.SIGKILL)

    def restart(self, *, down_for: float = 0.0) -> None:
        """Stop, stay down ``down_for`` seconds, start again on the same port and folder."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def _end(self, signum: signal.Signals, timeout: float = STOP_TIMEOUT) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signum)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)

    def log_tail(self, size: int = 2000) -> str:
        """The end of the server's log (empty if it wrote none)."""
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer {self.url} {state}>"


@contextlib.contextmanager
def run_redis(
    directory: Path | str | None = None,
    *,
    appendonly: bool = True,
    extra_args: tuple[str, ...] = (),
) -> Iterator[RedisServer]:
    """A started :class:`RedisServer` for the ``with`` block, stopped after it.

    Without ``directory``, its files go to a temporary folder removed afterwards.
    """
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="course-ws-redis-"))
        server = RedisServer(Path(directory), appendonly=appendonly, extra_args=extra_args)
        stack.enter_context(server)
        yield server
