"""Faults with the real programs: ``course-ws serve ... --broker redis://...`` processes and a
real ``redis-server`` restarted under them.

- Redis unreachable at start: every chat server exits at once with status 1 and one
  line naming the broker, no traceback, no hang.
- Servers of different stacks sharing one Redis: a message said on one reaches the
  members of the other.
- Redis restarted mid-run (append-only file, same port): the members stay connected,
  messages cross again once the subscribers have reconnected, the ids go on, and
  nothing that was accepted is lost: every member got every id exactly once, in order,
  and a client resuming on either server gets it all.
- Redis restarted without its data: the ids start over, so every member is closed with
  1012, resumes, is replayed the new history and talks on with the new ids.
- Redis down: a member saying something gets an error and stays; one joining is
  closed with 1013 (try again later), not 1011.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import COURSE_WS, course_ws_serve
from websockets.exceptions import ConnectionClosed

from course_ws.chat.brokers.redis import RESET
from course_ws.chat.service import UNAVAILABLE_TO_JOIN
from course_ws.clients.chat import ChatClient, Event
from course_ws.clients.metrics import get_metrics
from course_ws.hosting.programs import find_program
from course_ws.hosting.redis_server import RedisServer, free_loopback_port, run_redis

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHAT_SERVERS = ("chat", "asgi", "starlette", "fastapi")
pytestmark = pytest.mark.service("redis-server")


def require_redis() -> None:
    """Skip loudly if redis-server is absent; fail under CI=true."""
    if find_program("redis-server") is None:
        message = "redis-server is not installed (apt-get install redis-server): no Redis run"
        if IN_CI:
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of this test's own, with its append-only file."""
    require_redis()
    with run_redis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def forgetful_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server that forgets everything when it restarts (no append-only file)."""
    require_redis()
    with run_redis(tmp_path / "redis", appendonly=False) as server:
        yield server


@contextlib.contextmanager
def serving(name: str, broker: str, log: Path) -> Iterator[str]:
    """``course-ws serve NAME --port 0 --broker BROKER`` running; yields ``ws://127.0.0.1:PORT``."""
    with course_ws_serve(name, "--broker", broker, log=log) as server:
        yield server.url


@pytest.mark.parametrize("name", CHAT_SERVERS)
def test_an_unreachable_redis_at_start_is_one_line_and_status_1_at_once(name):
    port = free_loopback_port()  # nothing listens there
    started = time.monotonic()
    done = subprocess.run(
        [COURSE_WS, "serve", name, "--port", "0", "--broker", f"redis://127.0.0.1:{port}/0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert time.monotonic() - started < 10
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(
        f"course-ws serve: error: cannot reach the broker at redis://127.0.0.1:{port}/0: "
    ), done.stderr
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr


class Member:
    """A chat client that records every message id it receives, in order."""

    def __init__(self, client: ChatClient) -> None:
        self.client = client
        self.ids: list[int] = []

    async def message(self, timeout: float) -> Event:
        event = await self.client.next("message", timeout=timeout)
        self.ids.append(event["id"])
        return event


async def cross(speaker: Member, listeners: list[Member], text: str, timeout: float) -> int:
    """``speaker`` says ``text``; every member (the speaker too) receives it; its id."""
    await speaker.client.say(text)
    ids = set()
    for member in listeners:
        event = await member.message(timeout)
        assert event["text"] == text
        ids.add(event["id"])
    (message_id,) = ids
    return message_id


@pytest.mark.parametrize("other", ["asgi", "starlette", "fastapi"])
async def test_a_message_crosses_between_stacks_through_redis(redis_server, tmp_path, other):
    with (
        serving("chat", redis_server.url, tmp_path / "chat.log") as first,
        serving(other, redis_server.url, tmp_path / f"{other}.log") as second,
    ):
        async with (
            await ChatClient.connect(first, "lobby", user="alice") as alice,
            await ChatClient.connect(second, "lobby", user="bob") as bob,
        ):
            members = [Member(alice), Member(bob)]
            assert await cross(members[0], members, "hello from chat", 5) == 1
            assert await cross(members[1], members, f"hello from {other}", 5) == 2


async def test_a_redis_restart_mid_run_loses_nothing(redis_server, tmp_path):
    with (
        serving("chat", redis_server.url, tmp_path / "chat.log") as first,
        serving("fastapi", redis_server.url, tmp_path / "fastapi.log") as second,
    ):
        async with (
            await ChatClient.connect(first, "lobby", user="alice") as alice,
            await ChatClient.connect(second, "lobby", user="bob") as bob,
        ):
            members = [Member(alice), Member(bob)]
            accepted = []
            for n in range(5):
                accepted.append(await cross(members[n % 2], members, f"before {n}", 5))

            await asyncio.to_thread(redis_server.restart, down_for=1.0)

            # The same connections, still open: the first say after the restart may wait
            # for the other server's subscriber to reconnect and catch up from the store.
            for n in range(5):
                accepted.append(await cross(members[n % 2], members, f"after {n}", 15))
            assert accepted == list(range(1, 11))  # the ids went on: Redis kept them
            for member in members:
                assert member.ids == accepted  # each exactly once, in order
            for base in (first, second):  # each server's /metrics says what happened
                seen = await asyncio.to_thread(get_metrics, base.replace("ws://", "http://", 1))
                assert seen["course_ws_bus_connected"] == 1
                assert seen["course_ws_bus_connections"] >= 2
                assert seen["course_ws_bus_resets"] == 0

        for base in (first, second):  # resuming on either server, from any id
            for since in (0, 4):
                async with await ChatClient.connect(base, "lobby", since=since) as carol:
                    replayed = [(await carol.next("message"))["id"] for _ in range(10 - since)]
                    assert replayed == list(range(since + 1, 11))


async def test_a_say_while_redis_is_down_gets_an_error_and_the_member_stays(redis_server, tmp_path):
    with serving("chat", redis_server.url, tmp_path / "chat.log") as base:
        async with await ChatClient.connect(base, "lobby", user="alice") as alice:
            member = Member(alice)
            assert await cross(member, [member], "before", 5) == 1
            await asyncio.to_thread(redis_server.stop)
            try:
                await alice.say("while Redis is down")
                error = await alice.next("error", timeout=15)
                assert error["code"] == "unavailable"
            finally:
                await asyncio.to_thread(redis_server.start)
            # The same connection: nothing was accepted, so the next id is 2.
            assert await cross(member, [member], "after", 15) == 2


async def closed_with(client: ChatClient, timeout: float) -> tuple[int | None, str | None]:
    """Read until the server closes ``client``; its close code and reason."""
    with contextlib.suppress(ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                await client.event(timeout=timeout)
    return client.websocket.close_code, client.websocket.close_reason


async def test_a_redis_that_lost_its_data_has_every_member_resume(forgetful_redis, tmp_path):
    """Its ids start over: ids the members hold name other messages now. Each server closes
    its members with 1012; they resume with ``?since=3``, above the new last id, so they
    are replayed the whole new history, and talk on with the new ids."""
    with (
        serving("chat", forgetful_redis.url, tmp_path / "chat.log") as first,
        serving("fastapi", forgetful_redis.url, tmp_path / "fastapi.log") as second,
    ):
        async with (
            await ChatClient.connect(first, "lobby", user="alice") as alice,
            await ChatClient.connect(second, "lobby", user="bob") as bob,
        ):
            members = [Member(alice), Member(bob)]
            for n in range(3):
                await cross(members[n % 2], members, f"before {n}", 5)
            await asyncio.to_thread(forgetful_redis.restart, down_for=0.5)
            for client in (alice, bob):
                assert await closed_with(client, 20) == (1012, RESET)
            for base in (first, second):
                seen = await asyncio.to_thread(get_metrics, base.replace("ws://", "http://", 1))
                assert seen["course_ws_bus_resets"] == 1
                assert seen['course_ws_members_dropped_total{code="1012"}'] == 1
        async with (
            await ChatClient.connect(first, "lobby", user="alice", since=3) as alice,
            await ChatClient.connect(second, "lobby", user="bob", since=3) as bob,
        ):
            assert alice.welcome["last_id"] < 3
            members = [Member(alice), Member(bob)]
            said = await cross(members[1], members, "after the reset", 15)
            assert said == alice.welcome["last_id"] + 1


async def test_joining_while_redis_is_down_is_1013_try_again_later(redis_server, tmp_path):
    with serving("asgi", redis_server.url, tmp_path / "asgi.log") as base:
        await asyncio.to_thread(redis_server.stop)
        try:
            with pytest.raises(ConnectionClosed) as closed:  # within the subscribe timeout, 5 s
                await ChatClient.connect(base, "lobby", user="alice", timeout=30)
            received = closed.value.rcvd
            assert received is not None
            assert (received.code, received.reason) == (1013, UNAVAILABLE_TO_JOIN)
        finally:
            await asyncio.to_thread(redis_server.start)
        # And it works again, once the server's subscriber is back (its backoff reaches 5 s):
        # a client told 1013 tries again later, as this one does.
        welcome = await join_when_not_1013(base, within=30)
        assert welcome["last_id"] == 0


async def join_when_not_1013(base: str, within: float) -> Event:
    """Join ``lobby``, trying again every half second while the server answers 1013."""
    deadline = asyncio.get_running_loop().time() + within
    codes = []
    while asyncio.get_running_loop().time() < deadline:
        try:
            async with await ChatClient.connect(base, "lobby", user="alice", timeout=15) as alice:
                return alice.welcome  # a join may wait 5 s for its subscription
        except ConnectionClosed as again:
            codes.append(again.rcvd.code if again.rcvd else None)
            if codes[-1] != 1013:
                break
        await asyncio.sleep(0.5)
    pytest.fail(f"no welcome within {within:g} s; close codes: {codes}")
