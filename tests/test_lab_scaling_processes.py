"""``course-ws serve`` from a notebook, and what a message costs (``lab.scaling_processes``).

- :func:`serve_command` runs the real command line, finds its port, keeps its stderr
  (the supervisor's one-line warning with ``--workers 2`` on ``memory://``), stops it
  with SIGTERM (status 0, port closed), and fails with the command's own error when it
  cannot start.
- :func:`measure_cpu_per_message`: both load runs deliver every message to every member
  of its room, and the report's figures follow from the two runs.
"""

from __future__ import annotations

import socket

import pytest
from websockets.asyncio.client import connect

from course_ws.hosting.redis_server import free_loopback_port
from course_ws.lab.scaling_processes import (
    LOAD_FLAGS,
    CpuReport,
    CpuRun,
    measure_cpu_per_message,
    serve_command,
)


def test_the_cpu_report_is_the_difference_between_its_two_runs():
    low = CpuRun(rate=100, accepted=100, delivered=1000, cpu=0.10, lost=0)
    high = CpuRun(rate=500, accepted=500, delivered=5000, cpu=0.30, lost=0)
    report = CpuReport(low, high, duration=1.0, members_per_room=10)
    assert report.per_message == pytest.approx(0.2 / 400)
    assert report.per_delivery == pytest.approx(0.2 / 4000)
    assert report.saturation == pytest.approx(2000)
    assert report.busy == pytest.approx(0.3)
    text = str(report)
    assert "500 µs of CPU per message said" in text
    assert "one core saturates near 2,000 messages/s (20,000 deliveries/s)" in text


async def test_two_workers_on_memory_warn_once_and_stop_with_status_0():
    with serve_command("chat", "--workers", "2") as served:
        assert served.command == ("course-ws serve chat --workers 2 --port 0 --log-level warning")
        assert len(served.pids()) == 3  # the supervisor and its two workers
        async with connect(served.url + "/echo") as websocket:
            await websocket.send("hi")
            assert await websocket.recv() == "hi"
        (line,) = served.log().splitlines()
        assert "WARNING course_ws.hosting.workers: 2 workers with --broker memory://" in line
        port = served.port
    assert served.process.returncode == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_command_that_cannot_start_raises_with_its_own_error():
    nowhere = f"redis://127.0.0.1:{free_loopback_port()}/0"
    with (
        pytest.raises(RuntimeError, match=r"cannot reach the broker at redis://127\.0\.0\.1:"),
        serve_command("chat", "--broker", nowhere),
    ):
        pass  # never reached: the command exits at once


def test_both_load_runs_deliver_every_message_to_its_room():
    with serve_command("chat", *LOAD_FLAGS) as served:
        report = measure_cpu_per_message(
            served, rates=(100.0, 400.0), clients=20, rooms=2, duration=0.5
        )
    assert (report.low.accepted, report.high.accepted) == (50, 200)
    assert (report.low.delivered, report.high.delivered) == (500, 2000)  # 10 per room
    assert report.low.lost == report.high.lost == 0
    assert report.members_per_room == 10
    assert 0 < report.low.cpu < report.high.cpu
    assert report.per_message > 0
