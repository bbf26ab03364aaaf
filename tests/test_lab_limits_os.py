"""``course_ws.lab.limits_os``: the operating-system limits notebook 06b shows, live on loopback.

Each test reads real kernel settings or meets a real limit: a listener that never
accepts, a server child process whose open-files limit was lowered.
"""

from __future__ import annotations

import asyncio
import resource
import time

from websockets.asyncio.client import connect

from course_ws.lab.limits_os import (
    fill_backlog,
    granted_backlog,
    open_files_limits,
    port_range,
    serve_with_open_files_limit,
    socket_buffers,
    sysctl,
)


def test_sysctl_reads_proc_sys_and_says_none_for_an_unknown_name():
    assert int(sysctl("net.core.somaxconn") or 0) > 0
    assert sysctl("net.core.no_such_setting") is None
    first, last = port_range() or (0, 0)
    assert 1024 <= first < last <= 65535


def test_open_files_limits_are_this_process_rlimit():
    assert open_files_limits() == resource.getrlimit(resource.RLIMIT_NOFILE)


def test_a_full_accept_queue_drops_new_connections_silently():
    attempts = fill_backlog(backlog=2, attempts=5, timeout=0.2)
    outcomes = [attempt.outcome for attempt in attempts]
    assert outcomes == ["connected"] * 3 + ["timed out (SYN unanswered)"] * 2, outcomes
    last = attempts[-1]
    assert last.seconds >= 0.2
    assert last.queue is not None
    assert (last.queue.queued, last.queue.backlog) == (3, 2)


def test_the_kernel_caps_the_backlog_at_somaxconn():
    somaxconn = int(sysctl("net.core.somaxconn") or 0)
    assert granted_backlog(16) == 16
    assert granted_backlog(somaxconn * 4) == somaxconn


def test_idle_sockets_hold_no_buffers_and_unread_ones_hold_more_than_was_sent():
    buffers = socket_buffers(pairs=50, sent=32 * 1024)
    assert buffers is not None
    assert buffers.idle_per_connection < 1024
    assert buffers.full_per_connection > buffers.sent


async def _open_until_stuck(url: str, most: int) -> tuple[list, BaseException | None]:
    opened = []
    for _ in range(most):
        try:
            opened.append(await connect(url, open_timeout=1))
        except (TimeoutError, OSError) as exc:
            return opened, exc
    return opened, None


def test_a_server_at_its_open_files_limit_hangs_new_clients_and_recovers(tmp_path):
    async def scenario() -> None:
        with serve_with_open_files_limit("chat", limit=30, directory=tmp_path) as server:
            assert server.soft_limit() == 30
            url = server.url + "/echo"
            opened, failure = await _open_until_stuck(url, most=40)
            try:
                assert 5 < len(opened) < 30
                assert isinstance(failure, TimeoutError), failure
                assert server.open_files() == 30
                assert "Too many open files" in server.log_text()
                for websocket in opened[:3]:
                    await websocket.close()
                async with connect(url, open_timeout=5) as websocket:
                    await websocket.send("back")
                    assert await asyncio.wait_for(websocket.recv(), 5) == "back"
            finally:
                await asyncio.gather(*(websocket.close() for websocket in opened[3:]))
        assert server.process.poll() is not None

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 30
