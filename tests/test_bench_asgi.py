"""``course-ws bench asgi``: the quick run measures every server and reports every row.

Speeds are never asserted here: a busy CI machine is slow, not broken. The
targets (0.9× the bare framework's echo rate, 1.5× the chat server's fan-out
time) are what the full run in ``benchmarks/asgi.txt`` reports on.
"""

from __future__ import annotations

import math

import pytest

from course_ws.bench import BENCHMARKS, asgi
from course_ws.options import WS_IMPLEMENTATIONS

pytestmark = pytest.mark.timeout(240)  # about 20 s: 14 server processes, 7 rooms


@pytest.fixture(scope="module")
def report() -> asgi.AsgiReport:
    return asgi.run(quick=True)


def test_the_benchmark_is_listed_for_the_cli():
    assert "asgi" in BENCHMARKS


def test_every_echo_server_is_measured_with_every_client_count(report):
    servers = [server for group in asgi.echo_servers() for server in group]
    per_ws = 2 * len(asgi.STACKS) + len(asgi.UNPAIRED)  # course + bare, and the unpaired
    assert len(servers) == 2 + per_ws * len(WS_IMPLEMENTATIONS)
    assert set(report.echo) == set(servers)
    for server in servers:
        assert set(report.echo[server]) == set(asgi.QUICK.clients)
        for samples in report.echo[server].values():
            assert len(samples) == asgi.QUICK.rounds
            for sample in samples:
                assert sample.round_trips > 0, server
                assert sample.cpu_seconds >= 0
                assert sample.client_cpu_seconds >= 0


def test_each_course_server_is_paired_with_its_bare_framework_under_the_same_ws():
    for group in asgi.echo_servers():
        if len(group) == 2:
            course, bare = group
            assert (course.name, course.ws, course.bare) == (bare.name, bare.ws, False)
            assert bare.bare
            assert bare.arguments()[:2] == ["-m", "course_ws.bench.bare"]
            assert course.arguments()[-2:] == ["--ws", course.ws]


def test_every_server_fans_out_every_message_to_every_member(report):
    expected = [("chat", None)]
    names = asgi.STACKS + asgi.UNPAIRED
    expected += [(name, ws) for ws in WS_IMPLEMENTATIONS for name in names]
    assert [(row.name, row.ws) for row in report.fanout] == expected
    for row in report.fanout:
        timed = 0 if row.name in asgi.UNTIMED else asgi.QUICK.messages
        assert len(row.fanout) == timed, row.name
        assert all(0 < seconds < asgi.QUICK.deadline for seconds in row.fanout), row
        assert len(row.reach_all) == asgi.QUICK.messages
        assert all(math.isfinite(seconds) for seconds in row.reach_all), "a member missed one"


def test_the_report_has_a_row_per_server_and_a_verdict_per_target(report):
    lines = str(report).splitlines()
    assert lines[0] == "course-ws bench asgi --quick"
    assert "uvicorn" in lines[1]
    assert "fastapi" in lines[1]
    for server in report.echo:
        assert any(server.label in line and server.ws_label in line for line in lines), server
    verdicts = [line for line in lines if line.count("PASS") + line.count("MISS") == 3]
    assert len(verdicts) == len(asgi.STACKS) * len(WS_IMPLEMENTATIONS)
