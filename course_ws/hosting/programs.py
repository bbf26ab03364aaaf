"""Finding the external programs some chapters need: redis-server, nginx, chromium.

``doctor`` reports them and the test suite starts real ones from here, so the
two always agree on what "installed" means.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

EXTRA_DIRS = ("/usr/sbin", "/usr/local/sbin", "/usr/lib/chromium")
"""Where Debian puts programs that a non-root PATH does not include (nginx)."""


@dataclass(frozen=True)
class Program:
    """An external program the course can use, and what it is for."""

    name: str
    executables: tuple[str, ...]
    version_args: tuple[str, ...]
    debian_package: str
    needed_for: str

    def find(self) -> Path | None:
        """The program's path, or ``None`` when it is not installed."""
        search = os.pathsep.join([os.environ.get("PATH", ""), *EXTRA_DIRS])
        for executable in self.executables:
            found = shutil.which(executable, path=search)
            if found:
                return Path(found)
        return None

    def version(self, path: Path) -> str:
        """The first version number the program prints about itself (``?`` if none)."""
        try:
            done = subprocess.run(
                [str(path), *self.version_args], capture_output=True, text=True, timeout=20
            )
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        found = re.search(r"\d+(\.\d+)+", done.stdout + done.stderr)
        return found.group(0) if found else "?"


PROGRAMS: dict[str, Program] = {
    program.name: program
    for program in (
        Program(
            "redis-server",
            ("redis-server",),
            ("--version",),
            "redis-server",
            "chapter 06: broadcast across processes",
        ),
        Program("nginx", ("nginx",), ("-v",), "nginx", "chapter 06: a load balancer in front"),
        Program(
            "chromium",
            ("chromium", "chromium-browser", "google-chrome"),
            ("--version",),
            "chromium",
            "browser tests of the chat page (chapters 03, 09)",
        ),
    )
}


def find_program(name: str) -> Path | None:
    """Where the program called ``name`` (a key of :data:`PROGRAMS`) is installed, if it is."""
    return PROGRAMS[name].find()


PR_SET_PDEATHSIG = 1
"""``prctl`` option (Linux): the signal a process gets when the thread that started it ends."""


def ends_with_this_process() -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child gets SIGTERM when this process
    ends, however it ends (a SIGKILL, the out-of-memory killer, a notebook kernel restarted).

    A ``redis-server`` or ``nginx`` the course starts would otherwise outlive a
    supervisor killed that way, holding its port and its files. Linux only, and
    only from the main thread: the signal follows the *thread* that started the
    child, and only the main thread lasts as long as the process. ``None``
    elsewhere (nothing changes). What runs in the child between fork and exec is
    one system call through a function resolved here, before the fork.
    """
    if sys.platform != "linux" or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def end_with_parent() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # it ended before the call above: end now
            os.kill(os.getpid(), signal.SIGTERM)

    return end_with_parent
