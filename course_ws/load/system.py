"""What the operating system allows, and what the server process costs (Linux, from /proc).

Every connection is an open file on both sides. A shell's default soft limit
(``ulimit -n``) is often 1,024, which is why load tests written in a hurry stop
near a thousand connections with "Too many open files" (``EMFILE``). A process
may raise its own soft limit up to its hard limit without privileges, which the
load generator does (:func:`course_ws.hosting.open_files.raise_open_files_limit`);
the server's limit is set where it is started (:data:`SERVER_LIMIT_HINT`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
"""Units of the CPU times in ``/proc/PID/stat`` per second."""

SERVER_LIMIT_HINT = (
    "the server needs one open file per connection: raise its limit where it starts, "
    "`ulimit -n 65536` in its shell (up to the hard limit, `ulimit -Hn`), "
    "or LimitNOFILE=65536 in its systemd unit"
)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (a server's worker processes), from /proc."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:  # the task ended meanwhile
            continue
        for child in children:
            found.extend(process_tree(int(child)))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU time (user + system) that processes ``pids`` have used so far, from ``/proc``.

    A process that ended meanwhile counts nothing.
    """
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        # The command name (field 2) may hold spaces: the fields after it follow its ')'.
        fields = stat.rpartition(")")[2].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15
    return total / CLOCK_TICKS


def resident_bytes(pids: list[int]) -> int:
    """The resident memory (RSS) of ``pids`` together, in bytes (their shared pages count
    once per process, as ``ps`` counts them)."""
    total = 0
    for pid in pids:
        status = Path(f"/proc/{pid}/status").read_text()
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        total += int(found[1]) * 1024 if found else 0
    return total


def open_files_soft_limit(pid: int) -> int | None:
    """Process ``pid``'s soft limit of open files (``None``: unlimited or unreadable)."""
    try:
        limits = Path(f"/proc/{pid}/limits").read_text()
    except OSError:
        return None
    found = re.search(r"^Max open files\s+(\d+)", limits, re.MULTILINE)
    return int(found[1]) if found else None
