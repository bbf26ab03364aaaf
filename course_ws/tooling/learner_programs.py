"""Running a learner's whole program, ``python echo_server.py PORT``, for its check.

Some exercises are programs, not modules: their checks start the file in a
subprocess, read the ``listening on ws://127.0.0.1:PORT`` line it prints to
learn where it listens, talk to it, and kill it at the end, whatever happened::

    async with running(path, port=0) as program:
        ...  # connect to program.url

Every wait is bounded, and the process is always killed and reaped. When the
program does not say where it listens, :class:`ProgramDidNotStart` carries the
message for the learner; the check turns it into a failure (this module does
not import pytest: only the check plugin does, in this package).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = [
    "EXIT",
    "EXPECTED_LINE",
    "LISTENING",
    "STARTUP",
    "Program",
    "ProgramDidNotStart",
    "ctrl_c_inherited",
    "end",
    "running",
    "spawn",
    "wait_until_listening",
]

STARTUP = 5.0
"""Seconds for the program to print its port (a cold interpreter on a slow laptop)."""
EXIT = 5.0
"""Seconds for the program to end once killed."""
LISTENING = re.compile(r"listening on ws://127\.0\.0\.1:(\d+)")
EXPECTED_LINE = "'listening on ws://127.0.0.1:PORT'"


class ProgramDidNotStart(Exception):
    """The program did not print where it listens; ``str()`` is the message for the learner."""


@dataclass
class Program:
    """The learner's program, running: its process, its stderr file, and where it listens.

    ``url`` and ``port`` are those it printed, once :func:`wait_until_listening` returned.
    """

    process: subprocess.Popen[bytes]
    stderr: IO[bytes]
    url: str = ""
    port: int = 0

    def last_error_line(self) -> str:
        """The last line the program wrote to stderr (``ValueError: boom``), or ``""``."""
        self.stderr.seek(0)
        lines = self.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""


@contextlib.contextmanager
def ctrl_c_inherited() -> Iterator[None]:
    """Let the child react to SIGINT even if this process ignores it (nohup, background jobs)."""
    main_thread = threading.current_thread() is threading.main_thread()
    if not main_thread or signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the child starts with SIG_DFL
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def spawn(path: Path, port: int, stderr: IO[bytes]) -> subprocess.Popen[bytes]:
    """``python path port``, its stdout piped to us, its stderr into a file."""
    with ctrl_c_inherited():
        return subprocess.Popen(
            [sys.executable, str(path), str(port)], stdout=subprocess.PIPE, stderr=stderr
        )


async def end(process: subprocess.Popen[bytes]) -> int | None:
    """Kill ``process`` if it still runs and reap it; its exit status. Never waits long."""
    if process.poll() is None:
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        await asyncio.to_thread(process.wait, EXIT)
    return process.returncode


async def wait_until_listening(program: Program, command: str) -> None:
    """Read the program's stdout until it says where it listens; set ``url`` and ``port``.

    Raises :class:`ProgramDidNotStart`, naming ``command`` (what the learner would
    type), if no such line comes within ``STARTUP`` seconds or the program exits
    first (it is then reaped, and its last error line and what it printed quoted).
    """
    stdout = program.process.stdout
    assert stdout is not None, "spawn() pipes stdout"
    printed: list[str] = []
    try:
        async with asyncio.timeout(STARTUP):
            # readline blocks: in a thread, which the kill at the end releases
            while line := (await asyncio.to_thread(stdout.readline)).decode(errors="replace"):
                printed.append(line.strip())
                if found := LISTENING.search(line):
                    program.port = int(found.group(1))
                    program.url = f"ws://127.0.0.1:{program.port}"
                    return
    except TimeoutError:
        raise ProgramDidNotStart(
            f"`{command}` printed no {EXPECTED_LINE} line within {STARTUP:g} s"
            + (f" (it printed: {printed[-3:]})" if printed else "")
            + ": did you print it with flush=True?"
        ) from None
    status = await end(program.process)
    error = program.last_error_line()
    raise ProgramDidNotStart(
        f"`{command}` exited (status {status}) without printing {EXPECTED_LINE}"
        + (f"; its last error line: {error}" if error else "")
        + (f"; it printed: {printed[-3:]}" if printed else "; it printed nothing")
    )


@contextlib.asynccontextmanager
async def running(path: Path, port: int = 0) -> AsyncIterator[Program]:
    """``python path port``, once it has said where it listens; killed and reaped on exit.

    The command in messages is ``python NAME.py 0``, or ``python NAME.py PORT`` when
    a port was given. Its stderr goes to a file, not a pipe: a chatty program can
    never block on it. Raises :class:`ProgramDidNotStart` (see
    :func:`wait_until_listening`).
    """
    command = f"python {path.name} {'PORT' if port else 0}"
    with tempfile.TemporaryFile() as stderr:
        program = Program(spawn(path, port, stderr), stderr)
        try:
            await wait_until_listening(program, command)
            yield program
        finally:
            await end(program.process)
