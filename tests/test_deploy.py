"""nginx in front of two workers sharing a real Redis: ``course_ws.hosting.deploy.deploy_local``.

With the real ``nginx`` and ``redis-server`` (skipped loudly when one is missing,
failing under ``CI=true``), for a ``websockets`` server (chat) and an ASGI one (fastapi):

- members that nginx put on different workers hear each other;
- a worker killed with SIGTERM: its member gets 1001, reconnects through nginx to the
  other worker, resumes with ``?since=`` and loses nothing (by id); the supervisor
  starts a new worker in its place;
- a rolling restart: not one connection through nginx fails meanwhile, and the members,
  each closed once with 1001, resume and lose nothing;
- the misconfigured proxy (no Upgrade/Connection lines) answers every handshake with 426
  while ``/healthz`` still says ok;
- ``course-ws deploy local`` prints its URL and stops everything on SIGTERM, clients
  getting 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from required import require_program
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws.chat.metrics import read_metrics
from course_ws.clients.chat import ChatClient, Event
from course_ws.hosting.deploy import LocalDeployment, deploy_local
from course_ws.hosting.nginx import NginxServer, read_timeout_for, render_nginx_conf
from course_ws.lab.scaling_proxy import keep_connecting
from course_ws.lab.scaling_rooms import ResumingMember
from course_ws.load.system import process_tree

COURSE_WS = str(Path(sys.executable).with_name("course-ws"))
STACKS = ("chat", "fastapi")
pytestmark = [pytest.mark.service("nginx"), pytest.mark.service("redis-server")]


@pytest.fixture
def programs() -> None:
    require_program("nginx")
    require_program("redis-server")


@contextlib.asynccontextmanager
async def deployed(
    name: str, folder: Path, workers: int = 2, **options: object
) -> AsyncIterator[LocalDeployment]:
    """``deploy_local`` started and stopped in a thread, off the test's event loop."""
    manager = deploy_local(name, workers=workers, directory=folder, **options)  # type: ignore[arg-type]
    deployment = await asyncio.to_thread(manager.__enter__)
    try:
        yield deployment
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)


def healthz(http_url: str) -> int:
    """The status of ``GET /healthz``."""
    with urllib.request.urlopen(f"{http_url}/healthz", timeout=5) as response:
        return int(response.status)


def connections(http_url: str) -> float:
    """Open WebSockets on one worker, from its own /metrics."""
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=5) as response:
        return read_metrics(response.read().decode())["course_ws_connections"]


class Member(ResumingMember):
    """The lab's resuming member, asserting as it goes that the ids only go up."""

    async def message(self, timeout: float = 10.0) -> Event:
        event = await super().message(timeout)
        assert self.ids == sorted(set(self.ids)), (self.ids, event)
        return event


def test_the_rendered_configuration_is_the_example_with_its_addresses(programs, tmp_path):
    config = render_nginx_conf([("127.0.0.1", 4001), ("127.0.0.1", 4002)], ("127.0.0.1", 4000))
    upstream = re.search(r"upstream course_ws \{(.*?)\}", config, re.S)
    assert upstream is not None
    assert re.findall(r"server (\S+)", upstream.group(1)) == ["127.0.0.1:4001", "127.0.0.1:4002"]
    assert "least_conn;" in upstream.group(1)
    for line in (
        "listen 127.0.0.1:4000;",
        "proxy_http_version 1.1;",
        "map $http_upgrade $connection_upgrade {",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_read_timeout 75s;",
        "location = /healthz {",
        "daemon off;",
    ):
        assert line in config
    broken = render_nginx_conf([("127.0.0.1", 4001)], ("127.0.0.1", 4000), upgrade_headers=False)
    assert "proxy_set_header Upgrade" not in broken
    assert "$connection_upgrade;" not in broken.split("map $http_upgrade", 1)[1].split("}", 1)[1]
    for text in (config, broken):  # nginx itself accepts both
        NginxServer(tmp_path / str(len(text)), text, 4000).check()


def test_the_read_timeout_outlasts_the_ping_interval():
    assert read_timeout_for(20.0) == 75  # above nginx's default 60 s
    assert read_timeout_for(40.0) == 120
    with pytest.raises(ValueError, match="must ping"):
        read_timeout_for(None)


@pytest.mark.parametrize("name", STACKS)
async def test_a_worker_killed_with_sigterm_behind_nginx_loses_nothing(programs, tmp_path, name):
    async with deployed(name, tmp_path / "deploy") as deployment:
        alice = await Member(deployment.url, "alice").join()
        bob = await Member(deployment.url, "bob").join()
        members = [alice, bob]
        try:
            loads = [await asyncio.to_thread(connections, url) for url in deployment.worker_urls]
            assert loads == [1, 1]  # least_conn: one member on each worker
            for speaker in members:  # across workers, through Redis
                assert speaker.client is not None
                await speaker.client.say(f"from {speaker.user}")
                for member in members:
                    await member.message()

            victim_pid = deployment.workers.pids[0]
            os.kill(victim_pid, signal.SIGTERM)
            # Exactly one member was on worker 0: it is closed with 1001, the other stays.
            waits = {
                asyncio.create_task(m.client.websocket.wait_closed()): m
                for m in members
                if m.client
            }
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED, timeout=10)
            await asyncio.sleep(0.2)  # time for the other one to close too, were it to
            for task in pending:
                task.cancel()
            closed = [m for m in members if m.client and m.client.websocket.close_code is not None]
            assert len(closed) == 1, [m.user for m in closed]
            (victim,) = closed
            assert victim.client is not None
            assert victim.client.websocket.close_code == 1001
            victim.closes.append(1001)
            survivor = bob if victim is alice else alice

            assert survivor.client is not None
            for n in range(3):  # said while the victim is away
                await survivor.client.say(f"meanwhile {n}")
                await survivor.message()
            await victim.join()  # through nginx, resuming after its last id
            # nginx sent it to the surviving worker: both members are there now.
            assert await asyncio.to_thread(connections, deployment.worker_urls[1]) == 2
            await survivor.client.say("after")
            for member in members:  # the victim first gets the three it missed
                while (await member.message())["text"] != "after":
                    pass
            assert alice.ids == bob.ids == [1, 2, 3, 4, 5, 6]  # nothing lost, nothing twice
            assert victim.closes == [1001]

            deadline = time.monotonic() + 20  # the supervisor starts a worker in its place
            while deployment.workers.pids[0] in (0, victim_pid):
                assert time.monotonic() < deadline, "worker 0 was not replaced"
                await asyncio.sleep(0.1)
            assert deployment.workers.restarts == 1
        finally:
            for member in members:
                await member.close()


@pytest.mark.parametrize("name", STACKS)
async def test_a_rolling_restart_behind_nginx_refuses_nobody_and_loses_nothing(
    programs, tmp_path, name
):
    async with deployed(name, tmp_path / "deploy") as deployment:
        listeners = [await Member(deployment.url, user).join() for user in ("alice", "bob")]
        speaker = await Member(deployment.url, "carol").join()
        hearing = [asyncio.create_task(hear_until(member, "last")) for member in listeners]
        old_pids = deployment.workers.pids
        stop = asyncio.Event()
        connecting = asyncio.create_task(keep_connecting(deployment.url, stop))
        started = time.monotonic()
        restarting = asyncio.create_task(asyncio.to_thread(deployment.restart_workers))
        try:
            while not restarting.done():  # say a message every 50 ms during the restart
                assert speaker.client is not None
                with contextlib.suppress(ConnectionClosed):  # its worker is going: resume
                    await speaker.client.say("during")
                with contextlib.suppress(TimeoutError):
                    await speaker.message(timeout=0.05)
            assert await restarting  # every worker replaced
            took = time.monotonic() - started
            stop.set()
            connects = await connecting
            assert connects.failed == []  # nginx retried any 503 or reset on another worker
            assert set(connects.closed) <= {1001}
            assert connects.worked > 10
            assert set(deployment.workers.pids).isdisjoint(old_pids)

            last = await say_until_heard(speaker, "last")
            await asyncio.wait_for(asyncio.gather(*hearing), 15)
            for member in listeners:
                assert member.ids == list(range(1, int(last["id"]) + 1))  # type: ignore[call-overload]
                # Its worker was replaced: 1001. Its reconnect may land on the other worker
                # before that one is replaced too (least_conn picks it): 1001 again.
                assert member.closes in ([1001], [1001, 1001])
            print(
                f"{name}: rolling restart of 2 workers in {took:.1f} s; through nginx meanwhile "
                f"{connects.worked} connects worked, {len(connects.closed)} closed with 1001 "
                f"after opening, 0 failed; ids 1..{last['id']} reached both members"
            )
        finally:
            stop.set()
            for task in hearing:
                task.cancel()
            await asyncio.gather(connecting, restarting, *hearing, return_exceptions=True)
            for member in (*listeners, speaker):
                await member.close()


async def say_until_heard(member: Member, text: str) -> dict[str, object]:
    """Say ``text`` until it comes back; again after a resume if it did not get through."""
    while True:
        assert member.client is not None
        with contextlib.suppress(ConnectionClosed):  # closed meanwhile: message() resumes
            await member.client.say(text)
        with contextlib.suppress(TimeoutError):
            while (event := await member.message(timeout=2))["text"] != text:
                pass
            return event


async def hear_until(member: Member, text: str) -> None:
    """Read messages (resuming after each close) until one says ``text``."""
    while (await member.message(timeout=30))["text"] != text:
        pass


@pytest.mark.parametrize("name", STACKS)
async def test_a_proxy_without_upgrade_headers_fails_every_handshake_with_426(
    programs, tmp_path, name
):
    async with deployed(name, tmp_path / "deploy", upgrade_headers=False) as deployment:
        with pytest.raises(InvalidStatus) as refused:
            await ChatClient.connect(deployment.url, "lobby", user="alice")
        assert refused.value.response.status_code == 426  # Upgrade Required, from the worker
        assert await asyncio.to_thread(healthz, deployment.http_url) == 200  # no one notices


async def test_limits_apply_to_the_address_nginx_forwards(programs, tmp_path):
    # One worker: limits per address are counted in each process, so with two workers
    # least_conn would put the second connection on the other one, and admit it.
    folder = tmp_path / "deploy"
    async with deployed("chat", folder, workers=1, max_connections_per_address=1) as deployment:
        first = await ChatClient.connect(deployment.url, "lobby", local_addr=("127.0.0.2", 0))
        try:
            with pytest.raises(InvalidStatus) as refused:  # the same client address again
                await ChatClient.connect(deployment.url, "lobby", local_addr=("127.0.0.2", 0))
            assert refused.value.response.status_code == 429
            # Another client address, through the same nginx (127.0.0.1): admitted.
            other = await ChatClient.connect(deployment.url, "lobby", local_addr=("127.0.0.3", 0))
            await other.close()
        finally:
            await first.close()


async def test_the_deploy_command_prints_its_url_and_stops_everything_on_sigterm(
    programs, tmp_path
):
    process = await asyncio.to_thread(
        subprocess.Popen,
        [COURSE_WS, "deploy", "local", "chat", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = await asyncio.to_thread(process.stdout.readline)
        found = re.search(r" listening on (127\.0\.0\.1:\d+)$", first)
        assert found, first
        lines = [await asyncio.to_thread(process.stdout.readline) for _ in range(10)]
        assert any(line.startswith("redis-server redis://127.0.0.1:") for line in lines), lines
        client = await ChatClient.connect(f"ws://{found.group(1)}", "lobby", user="alice")
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            await client.websocket.wait_closed()
        assert client.websocket.close_code == 1001
        assert await asyncio.to_thread(process.wait, 30) == 0
        assert time.monotonic() - started < 20
    finally:
        if process.poll() is None:  # SIGTERM first: a SIGKILL would leave nginx and Redis
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
    ports = re.findall(r"127\.0\.0\.1:(\d+)", first + "".join(lines))
    for port in set(ports):  # nginx, every worker and Redis are gone
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(port)), timeout=2).close()


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (which has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_a_deploy_killed_with_sigkill_leaves_no_program_behind(programs, tmp_path):
    """A SIGKILL (or the out-of-memory killer) gives a process no chance to stop what it
    started: Redis and nginx end with it all the same (PR_SET_PDEATHSIG), the workers by
    their lifeline. Before, both went on holding their ports."""
    output = tmp_path / "deploy.out"
    with output.open("wb") as stdout:
        process = subprocess.Popen(
            [COURSE_WS, "deploy", "local", "chat", "--workers", "1"],
            stdout=stdout,
            stderr=subprocess.DEVNULL,
        )
    try:
        deadline = time.monotonic() + 60
        while "redis-server redis://" not in output.read_text():
            assert process.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.05)
        started = [pid for pid in process_tree(process.pid) if pid != process.pid]
        names = {Path(f"/proc/{pid}/comm").read_text().strip() for pid in started}
        assert {"redis-server", "nginx"} <= names, names
    finally:
        process.kill()
        process.wait(10)
    deadline = time.monotonic() + 15
    while running := [pid for pid in started if alive(pid)]:
        assert time.monotonic() < deadline, f"still running 15 s after the SIGKILL: {running}"
        time.sleep(0.1)
