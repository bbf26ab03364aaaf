"""``course_ws.lab.limits_load``: notebook 06b's load sweep, against real workers and Redis.

A short sweep (20 clients, half a second of messages) with 1 and 2 workers of
the chat server over a real ``redis-server``: every run clean, every party's
CPU accounted for, and nothing left running.
"""

from __future__ import annotations

import os
from pathlib import Path

from course_ws.lab.limits_load import CpuUse, load_sweep
from course_ws.load.system import process_tree


def test_cpu_use_shares():
    use = CpuUse(generator=1.0, server=2.5, redis=0.5, elapsed=2.0, cores=2)
    assert use.total == 4.0
    assert use.generator_share == 0.25
    assert use.busy == 1.0


def test_a_short_sweep_with_one_and_two_workers_is_clean_and_accounts_for_the_cpu():
    children_before = set(process_tree(os.getpid())[1:])
    points = load_sweep(clients=(20,), workers=(1, 2), rate_per_client=2, duration=0.5)
    assert [(p.workers, p.clients, p.rooms, p.rate) for p in points] == [
        (1, 20, 2, 40),
        (2, 20, 2, 40),
    ]
    for point in points:
        assert point.clean, str(point.report)
        assert point.report.delivered == point.report.accepted * 10
        latency = point.latency_ms
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
        assert point.memory_per_connection is not None
        assert point.cpu.generator > 0
        assert point.cpu.server > 0
        assert 0 < point.cpu.generator_share < 1
        assert point.timeline
        assert "20 clients" in str(point)
    left = [
        command(pid) for pid in process_tree(os.getpid())[1:] if pid not in children_before
    ]  # multiprocessing's resource tracker stays, for the life of this process
    assert not [line for line in left if "workers" in line or "redis-server" in line], left


def command(pid: int) -> str:
    """Process ``pid``'s command line ('' once it has ended)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
