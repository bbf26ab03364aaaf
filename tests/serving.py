"""``course-ws serve`` as a process of a test: started on a free port, its address read, stopped.

Tests that run a server the way a user does need the same three steps: start
``course-ws serve NAME --port 0 ...``, read the address from its first line
(``NAME (STACK) listening on 127.0.0.1:PORT``), and stop it with SIGTERM (its
clients get 1001), killing it only if it does not exit in time. Both waits are
bounded, so a server that hangs fails the test instead of stalling the run.

    with course_ws_serve("chat", "--broker", redis.url, log=tmp_path / "chat.log") as server:
        client = await ChatClient.connect(server.url, "lobby")

The banner goes to a file, not a pipe, so a server that prints more than a pipe
holds can never block on a reader that stopped reading; its log (stderr) goes
to ``log``.
"""

from __future__ import annotations

import contextlib
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

COURSE_WS = str(Path(sys.executable).with_name("course-ws"))
"""The ``course-ws`` command of the interpreter running the tests."""
LISTENING = re.compile(r" listening on (127\.0\.0\.1:\d+)$", re.MULTILINE)
START_TIMEOUT = 30.0
"""Seconds a server may take to print its address (channels imports Django and migrates)."""
STOP_TIMEOUT = 15.0
"""Seconds a server may take to exit after SIGTERM (the close timeout, 5 s, and a margin)."""


@dataclass(frozen=True)
class Served:
    """A running ``course-ws serve`` process and where it listens."""

    process: subprocess.Popen[bytes]
    address: str
    """``127.0.0.1:PORT``, as its first line printed it."""
    log: Path
    """Its stderr: the server's log lines."""
    output: Path
    """Its stdout: the banner and the URLs of its endpoints."""

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT``."""
        return f"ws://{self.address}"

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.address}"

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    def log_text(self) -> str:
        """Everything it logged so far."""
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def course_ws_serve(
    name: str,
    *args: str,
    log: Path,
    log_level: str = "warning",
    start_timeout: float = START_TIMEOUT,
    stop_timeout: float = STOP_TIMEOUT,
    preexec_fn: Callable[[], object] | None = None,
) -> Iterator[Served]:
    """``course-ws serve NAME --port 0 --log-level LOG_LEVEL ARGS`` for the ``with`` block.

    Fails the test (with the server's log) if it exits or prints no address
    within ``start_timeout``. Afterwards it gets SIGTERM and ``stop_timeout``
    seconds to exit, then SIGKILL; ``process.returncode`` says which (0: a clean
    stop). ``preexec_fn`` runs in the child before the command (to lower a limit, say).
    """
    output = log.with_name(f"{log.name}.stdout")
    with log.open("wb") as stderr, output.open("wb") as stdout:
        process = subprocess.Popen(
            [COURSE_WS, "serve", name, "--port", "0", "--log-level", log_level, *args],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            preexec_fn=preexec_fn,
        )
    try:
        address = _wait_for_address(process, output, start_timeout)
        if address is None:
            pytest.fail(
                f"course-ws serve {name} {' '.join(args)} printed no address "
                f"(exit status {process.poll()}): {log.read_text(errors='replace')[-2000:]}"
            )
        yield Served(process, address, log, output)
    finally:
        stop(process, stop_timeout)


def _wait_for_address(process: subprocess.Popen[bytes], output: Path, timeout: float) -> str | None:
    """The ``HOST:PORT`` of the banner once it is printed; ``None`` if it exits or times out."""
    deadline = time.monotonic() + timeout
    while True:
        found = LISTENING.search(output.read_text(errors="replace"))
        if found:
            return found.group(1)
        if process.poll() is not None or time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def stop(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """SIGTERM, up to ``timeout`` seconds to exit, then SIGKILL; its exit status."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(5)
