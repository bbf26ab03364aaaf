"""``--workers N``: N processes on one port under a supervisor (course_ws.hosting.workers).

- ``course-ws serve NAME --workers 2``, for a ``websockets`` server (chat) and an ASGI one
  (fastapi), with a real Redis: SIGHUP restarts the workers one at a time while a client
  keeps connecting, and not one connection fails; each member is closed once with 1001
  and resumes with ``?since=``, losing nothing; SIGTERM closes every client with 1001.
- A worker that dies is replaced, and the shared port serves throughout.
- A worker that cannot start (Redis unreachable) ends the command at once, status 1.
- Several workers on ``memory://`` get a one-line warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from required import require_program
from serving import COURSE_WS, course_ws_serve
from test_deploy import Member

from course_ws.clients.chat import ChatClient
from course_ws.hosting.redis_server import RedisServer, free_loopback_port, run_redis
from course_ws.hosting.workers import memory_broker_warning, serve_workers
from course_ws.lab.scaling_proxy import keep_connecting
from course_ws.options import ServeOptions

STACKS = ("chat", "fastapi")


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    require_program("redis-server")
    with run_redis(tmp_path / "redis") as server:
        yield server


@contextlib.contextmanager
def serving(name: str, *args: str, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``course-ws serve NAME ARGS`` running; yields the process and ``ws://127.0.0.1:PORT``."""
    with course_ws_serve(name, *args, log=log, log_level="info", stop_timeout=30) as server:
        yield server.process, server.url


def test_workers_is_an_option_from_1_to_64():
    assert ServeOptions().workers == 1
    for bad in (0, -1, 65):
        with pytest.raises(ValueError, match=r"workers must be 1\.\.64"):
            ServeOptions(workers=bad)
    done = subprocess.run(
        [COURSE_WS, "serve", "chat", "--workers", "0"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert done.stderr == (
        "course-ws serve: error: --workers must be 1..64, got 0 (see course-ws serve --help)\n"
    )


def test_several_workers_on_a_memory_broker_get_one_warning_line():
    assert memory_broker_warning(ServeOptions()) is None
    assert memory_broker_warning(ServeOptions(workers=2, broker="redis://127.0.0.1:1/0")) is None
    warning = memory_broker_warning(ServeOptions(workers=2))
    assert warning is not None
    assert "\n" not in warning
    assert "do not share rooms" in warning
    assert "--broker redis://" in warning


@pytest.mark.service("redis-server")
@pytest.mark.parametrize("name", STACKS)
async def test_sighup_restarts_the_workers_one_at_a_time_refusing_nobody(
    redis_server, tmp_path, name
):
    log = tmp_path / "serve.log"
    with serving(name, "--workers", "2", "--broker", redis_server.url, log=log) as (process, url):
        members = [await Member(url, user).join() for user in ("alice", "bob")]
        try:
            assert members[0].client is not None
            await members[0].client.say("before")
            for member in members:
                await member.message()

            stop = asyncio.Event()
            connecting = asyncio.create_task(keep_connecting(url, stop))
            await asyncio.sleep(0.3)
            process.send_signal(signal.SIGHUP)
            # Every member was on an old worker: each is closed once with 1001.
            for member in members:
                assert member.client is not None
                async with asyncio.timeout(30):
                    await member.client.websocket.wait_closed()
                assert member.client.websocket.close_code == 1001
            deadline = time.monotonic() + 30
            while log.read_text().count(" restarted: pid ") < 2:
                assert time.monotonic() < deadline, log.read_text()
                await asyncio.sleep(0.1)
            stop.set()
            connects = await connecting
            # The supervisor holds the shared socket: never a refusal. A handshake caught
            # by a worker's shutdown may get websockets' 503 (no proxy here to retry it).
            assert connects.refused == []
            assert set(connects.closed) <= {1001}
            assert all("503" in failure for failure in connects.failed), connects.failed
            assert connects.worked > 10
            print(
                f"{name}: SIGHUP with a client connecting: {connects.worked} worked, "
                f"{len(connects.closed)} closed with 1001 after opening, "
                f"{len(connects.failed)} failed: {connects.failed}"
            )

            bob = members[1]
            assert bob.client is not None
            bob.closes.append(bob.client.websocket.close_code)
            await bob.join()  # resuming after his last id
            assert bob.client is not None
            await bob.client.say("after")
            for member in members:  # each resumes after the 1001 and misses nothing
                while (await member.message())["text"] != "after":
                    pass
                assert member.ids == [1, 2]
                assert member.closes == [1001]
        finally:
            for member in members:
                await member.close()


@pytest.mark.parametrize("name", STACKS)
async def test_sigterm_closes_every_client_of_every_worker_with_1001(tmp_path, name):
    with serving(name, "--workers", "2", log=tmp_path / "serve.log") as (process, url):
        clients = [await ChatClient.connect(url, "lobby") for _ in range(6)]
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        for client in clients:
            async with asyncio.timeout(15):
                await client.websocket.wait_closed()
            assert client.websocket.close_code == 1001
        assert await asyncio.to_thread(process.wait, 20) == 0
        assert time.monotonic() - started < 10
    assert "memory:// do not share rooms" in (tmp_path / "serve.log").read_text()


async def test_a_worker_that_dies_is_replaced_and_the_port_serves_throughout(tmp_path):
    with serve_workers("echo", workers=2, log=tmp_path / "workers.log") as pool:
        stop = asyncio.Event()
        connecting = asyncio.create_task(keep_connecting(pool.url, stop))
        await asyncio.sleep(0.2)
        dead = pool.pids[0]
        os.kill(dead, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while pool.pids[0] in (0, dead):
            assert time.monotonic() < deadline, (tmp_path / "workers.log").read_text()
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)
        stop.set()
        connects = await connecting
        assert connects.failed == []
        assert set(connects.closed) <= {1001}
        assert connects.worked > 10
        assert pool.restarts == 1
        assert len(set(pool.pids)) == 2
    for pid in pool.pids:
        assert pid == 0  # stopped: every slot empty


def test_a_worker_that_cannot_start_ends_the_command_at_once():
    port = free_loopback_port()  # no Redis there
    broker = f"redis://127.0.0.1:{port}/0"
    started = time.monotonic()
    done = subprocess.run(
        [COURSE_WS, "serve", "chat", "--workers", "2", "--port", "0", "--broker", broker],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert time.monotonic() - started < 20
    assert done.returncode == 1
    assert done.stdout == ""
    assert f"cannot reach the broker at redis://127.0.0.1:{port}/0" in done.stderr
    assert "course-ws serve: error: worker 0 of chat did not start (exit status 1)" in done.stderr
    assert "Traceback" not in done.stderr
