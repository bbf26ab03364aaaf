"""``course-ws bench scale``: the quick run measures every part and reports every row.

It starts the real programs (``redis-server``, ``nginx``, worker processes)
and the load generator's client processes. Timings are never asserted (a busy
CI machine is slow, not broken); what is asserted is what a healthy deployment
must show at any speed: nobody dropped, nothing lost, every figure present,
and nothing left running afterwards, even when the run fails half-way.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from pathlib import Path

import pytest
from required import require_program

from course_ws.bench import BENCHMARKS, scale
from course_ws.bench.scale_watch import PingObserver
from course_ws.hosting.deploy import deploy_local
from course_ws.load.system import process_tree

pytestmark = [
    pytest.mark.service("nginx"),
    pytest.mark.service("redis-server"),
    pytest.mark.timeout(240),  # about 25 s: three deployments, six load runs
]
QUICK = scale.QUICK
MAKEFILE = Path(__file__).parents[1] / "Makefile"


def started_here() -> list[str]:
    """The command lines of this process's descendants that the benchmark starts (not
    multiprocessing's resource tracker, which lives as long as the process that started it)."""
    commands = []
    for pid in process_tree(os.getpid())[1:]:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if re.search(
            r"nginx|redis-server|course_ws\.hosting\.workers|multiprocessing\.spawn", command
        ):
            commands.append(command)
    return commands


@pytest.fixture(scope="module")
def report() -> scale.ScaleReport:
    require_program("nginx")
    require_program("redis-server")
    return scale.run(quick=True)


def test_the_benchmark_is_listed_for_the_cli_and_the_makefile():
    assert "scale" in BENCHMARKS
    loop = re.search(r"for name in ([^;]+); do", MAKEFILE.read_text())
    assert loop is not None
    assert loop.group(1).split()[-1] == "scale"


def test_every_held_connection_stays_and_still_delivers(report):
    hold = report.hold
    result = hold.run.report
    assert hold.dropped == 0, (result.connect_failures, result.close_codes)
    assert result.connected == QUICK.hold_clients
    assert result.accepted == result.sent > 0
    assert result.lost == 0
    assert result.delivered == result.expected == result.accepted * scale.HOLD_ROOM_SIZE
    assert hold.observer_error is None
    watch = hold.run.watch
    assert len(watch.connections_peak) == 2
    assert min(watch.connections_peak) > 0, "nginx spread the members over both workers"
    assert sum(watch.connections_peak) >= QUICK.hold_clients
    assert 0 < watch.nginx_before < watch.nginx_peak
    assert len(watch.nginx_descriptors_peak) == len(hold.nginx_file_limits) == 2
    assert sum(watch.nginx_descriptors_peak) >= 2 * QUICK.hold_clients  # client + upstream
    assert result.server.per_connection is not None
    assert not [line for line in hold.nginx_errors if "[warn]" not in line]


def test_the_ping_observer_counts_pings_on_a_short_interval(report):
    # The quick hold is shorter than the 5 s ping interval: this checks the counting
    # itself on a deployment of its own, pinging every 0.2 s.
    options = {**scale.SERVER_OPTIONS, "ping_interval": 0.2}
    with (
        deploy_local("chat", workers=1, **options) as deployment,
        PingObserver(deployment.url) as observer,
    ):
        time.sleep(1.5)
    assert observer.error is None
    assert observer.pings >= 3, observer.pings


def test_the_fanout_room_is_measured_on_each_deployment(report):
    assert [row.label for row in report.fanout] == [
        scale.ONE_PROCESS,
        scale.ONE_WORKER,
        scale.TWO_WORKERS,
    ]
    for row in report.fanout:
        assert len(row.runs) == QUICK.fanout_rounds
        for run in row.runs:
            assert run.clean, row.label
        messages = sum(run.report.accepted for run in row.runs)
        assert len(row.latencies) == messages * QUICK.fanout_members
        assert 0 < row.percentile(50) <= row.percentile(95) <= row.percentile(99) < math.inf
    two = report.fanout[-1].runs[0].watch.connections_peak
    assert len(two) == 2
    assert min(two) > 0, "the room has members on both workers"
    assert math.isfinite(report.added_p50)


def test_each_ramp_runs_its_rates_in_order_with_every_party_s_cpu(report):
    assert [steps[0].run.workers for steps in report.ramps] == [1, 2]
    for steps in report.ramps:
        rates = [step.rate for step in steps]
        assert rates == list(QUICK.ramp_rates[: len(rates)])
        assert all(step.sustained for step in steps[:-1]), "the ramp stops at the first miss"
        for step in steps:
            assert len(step.runs) == (1 if step.runs[0] is step.run else 2)
            cpu = step.run.cpu
            assert len(cpu.workers) == step.run.workers
            assert cpu.elapsed > 0
            assert cpu.generator > 0, "the client processes' CPU is counted"
            assert min(cpu.nginx, cpu.redis, *cpu.workers) >= 0
            assert cpu.machine > 0
            assert step.run.sending_cpu.elapsed >= QUICK.ramp_seconds


def test_the_report_shows_every_row(report):
    text = str(report)
    assert text.startswith("course-ws bench scale --quick\n")
    for needed in (
        "Load average",
        "nginx ",
        "redis-server ",
        "dropped        0:",
        "keepalive",
        "connect time",
        "per connection",
        "files open",
        "added p50",
        "msg/s",
    ):
        assert needed in text, needed
    assert re.search(r"added p50.*: -?\d+\.\d\d ms .*: (PASS|MISS)", text)
    for row in report.fanout:
        assert re.search(rf"{re.escape(row.label)}\s+\d", text), row.label
    ramp_rows = re.findall(r"(?m)^\s+([12])\s+([\d,]+)\s+[12]\s+\d+\.\d\s", text)
    expected = [(str(s.run.workers), f"{s.rate:,.0f}") for steps in report.ramps for s in steps]
    assert ramp_rows == expected
    for line in text.splitlines():
        assert len(line) <= 110, line


def test_nothing_is_left_running_even_when_a_run_fails(report):
    assert started_here() == []
    broken = dataclasses.replace(QUICK, hold_clients=0)  # refused by the load plan
    with pytest.raises(ValueError, match="clients"):
        scale.run(quick=True, settings=broken)
    assert started_here() == []
