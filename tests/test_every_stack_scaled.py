"""Every chat server as two workers on a real Redis: rooms are shared, and resuming loses nothing.

For each catalogue server with a ``/chat/{room}`` endpoint (chat, asgi, starlette,
fastapi, channels, and any stack added later), in two deployments:

- ``deploy_local``: a real ``redis-server``, two workers of the server on their own
  ports (:class:`~course_ws.hosting.workers.WorkerPool`) and a real ``nginx`` in front;
- ``serve``: two ``course-ws serve NAME --broker redis://...`` processes, as a user
  starts them (:mod:`serving`), on one Redis shared by the whole module.

Channels' workers share one SQLite file (``--database``), its store; the others ignore it.

Clients are pinned: "worker A" and "worker B" are each worker's own port, so a
message that crosses has gone through Redis, not through luck of the balancer.

- A member on A, one on B (and one through nginx) each hear every message, in the
  same order, with ids that go on by one whoever said them.
- A client reads ids 1..k on A and leaves; more messages are said on A and B, and a
  burst on A while it reconnects (so that its replay, read from the store, meets the
  same ids still on their way through the bus); it resumes on B with ``?since=k`` and
  gets exactly k+1..n: 0 lost, 0 twice, in order.
- Everything started is stopped, in bounded time: afterwards no port answers.

Skipped loudly without ``redis-server`` or ``nginx``; under ``CI=true`` that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from required import require_program
from serving import course_ws_serve

from course_ws.clients.chat import ChatClient, Event
from course_ws.clients.probes import fresh_room
from course_ws.hosting.catalogue import CATALOGUE
from course_ws.hosting.deploy import deploy_local
from course_ws.hosting.redis_server import RedisServer, run_redis

CHAT_STACKS = [name for name, entry in CATALOGUE.items() if "/chat/{room}" in entry.endpoints]
DEPLOYMENTS = ("deploy_local", "serve")
UNLIMITED = {"message_rate": 1000.0, "message_burst": 1000}
"""Every client here is 127.0.0.1: the per-address message rate must not refuse the test's."""
STOPPED_WITHIN = 30.0
"""Seconds a deployment may take to stop (each worker closes its clients first)."""
TIMEOUT = 10.0
"""Seconds any one message may take to arrive."""
pytestmark = pytest.mark.service("redis-server")


@dataclass
class Scaled:
    """Two workers of one stack sharing a Redis, and what to check once they are stopped."""

    stack: str
    workers: list[str]
    """``ws://127.0.0.1:PORT`` of worker A, then of worker B."""
    proxy: str | None = None
    """``ws://127.0.0.1:PORT`` of nginx in front of both (``deploy_local`` only)."""
    ports: list[int] = field(default_factory=list)
    """Every port this deployment listened on (nginx, workers, its own Redis)."""
    pids: list[int] = field(default_factory=list)
    """Every process it started."""


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real Redis for the module's ``course-ws serve`` processes (each test: a fresh room)."""
    require_program("redis-server")
    with run_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(
    scope="module",
    params=[(how, stack) for stack in CHAT_STACKS for how in DEPLOYMENTS],
    ids=lambda param: f"{param[1]}-{param[0]}",
)
def scaled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scaled]:
    """Two workers of a stack, deployed one way; stopped (and checked stopped) afterwards."""
    how, stack = request.param
    folder = tmp_path_factory.mktemp(f"{stack}-{how}")
    database = str(folder / "chat.sqlite3")  # channels' store: one file for both workers
    if how == "deploy_local":
        require_program("redis-server")
        require_program("nginx")
        with deploy_local(stack, workers=2, directory=folder, database=database, **UNLIMITED) as d:
            workers = [f"ws://{host}:{port}" for host, port in d.workers.addresses]
            ports = [d.nginx.port, d.redis.port, *(port for _, port in d.workers.addresses)]
            pids = [*d.workers.pids, *(p.pid for p in (d.nginx.process, d.redis.process) if p)]
            deployment = Scaled(stack, workers, d.url, ports, pids)
            yield deployment
            started = time.monotonic()
    else:
        redis: RedisServer = request.getfixturevalue("shared_redis")
        limits = [f"--{key.replace('_', '-')}={value}" for key, value in UNLIMITED.items()]
        args = ("--broker", redis.url, "--database", database, *limits)
        with (
            course_ws_serve(stack, *args, log=folder / "a.log") as a,
            course_ws_serve(stack, *args, log=folder / "b.log") as b,
        ):
            pids = [a.process.pid, b.process.pid]
            deployment = Scaled(stack, [a.url, b.url], None, [a.port, b.port], pids)
            yield deployment
            started = time.monotonic()
        assert (a.process.returncode, b.process.returncode) == (0, 0)  # SIGTERM: a clean exit
    took = time.monotonic() - started
    assert took < STOPPED_WITHIN, f"{how} {stack} took {took:.1f} s to stop"
    for port in deployment.ports:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    for pid in deployment.pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


async def next_message(client: ChatClient) -> Event:
    return await client.next("message", timeout=TIMEOUT)


async def test_members_on_different_workers_hear_each_other_with_ids_in_sequence(scaled):
    room = fresh_room()
    entrances = {"on-A": scaled.workers[0], "on-B": scaled.workers[1]}
    if scaled.proxy is not None:
        entrances["via-nginx"] = scaled.proxy
    async with contextlib.AsyncExitStack() as stack:
        members = {
            user: await stack.enter_async_context(await ChatClient.connect(url, room, user=user))
            for user, url in entrances.items()
        }
        heard: dict[str, list[tuple[int, str, str]]] = {user: [] for user in members}
        for turn in range(2):
            for speaker, client in members.items():
                await client.say(f"{speaker} {turn}")
                for user, member in members.items():  # everyone, the speaker too, hears it
                    event = await next_message(member)
                    heard[user].append((event["id"], event["user"], event["text"]))

    said = [(user, f"{user} {turn}") for turn in range(2) for user in members]
    expected = [(n, user, text) for n, (user, text) in enumerate(said, start=1)]
    for user in members:
        assert heard[user] == expected, user


async def say_all(speaker: ChatClient, texts: list[str]) -> None:
    """Say every text at once, without waiting for any to come back."""
    for text in texts:
        await speaker.say(text)


async def hear_until(client: ChatClient, text: str) -> list[tuple[int, str]]:
    """``(id, text)`` of every message up to and including the one that says ``text``."""
    heard: list[tuple[int, str]] = []
    while not heard or heard[-1][1] != text:
        event = await next_message(client)
        heard.append((event["id"], event["text"]))
    return heard


async def test_a_client_resuming_on_another_worker_misses_nothing_and_gets_nothing_twice(
    scaled,
):
    room = fresh_room()
    worker_a, worker_b = scaled.workers
    k, away, during = 4, 5, 6
    async with contextlib.AsyncExitStack() as stack:
        on_a = await stack.enter_async_context(await ChatClient.connect(worker_a, room, user="ada"))
        on_b = await stack.enter_async_context(await ChatClient.connect(worker_b, room, user="bob"))
        speakers = [on_a, on_b]
        truth: list[tuple[int, str]] = []
        """``(id, text)`` of every message, as ada on A heard it: she is there throughout."""

        async def say_in_turn(texts: list[str]) -> None:
            """A and B in turn, each message heard by both before the next."""
            for n, text in enumerate(texts):
                await speakers[n % 2].say(text)
                heard = [await next_message(speaker) for speaker in speakers]
                assert [event["text"] for event in heard] == [text, text]
                assert heard[0]["id"] == heard[1]["id"]
                truth.append((heard[0]["id"], text))

        reader = await ChatClient.connect(worker_a, room, user="reader")
        try:
            await say_in_turn([f"before {n}" for n in range(k)])
            first = [(await next_message(reader))["id"] for _ in range(k)]
        finally:
            await reader.close()
        assert first == [message_id for message_id, _ in truth] == list(range(1, k + 1))

        await say_in_turn([f"away {n}" for n in range(away)])
        # More said on A while the reader joins B: the replay and the live events meet.
        burst = [f"during {n}" for n in range(during)]
        resumed, _ = await asyncio.gather(
            ChatClient.connect(worker_b, room, user="reader", since=k), say_all(on_a, burst)
        )
        reader = await stack.enter_async_context(resumed)
        assert reader.welcome["last_id"] >= k + away  # at least all that was said while away
        truth += await hear_until(on_a, burst[-1])  # the burst was all accepted...
        await reader.say("back")  # ...before the last message: nothing comes after it
        truth += await hear_until(on_a, "back")
        got = await hear_until(reader, "back")

    assert [message_id for message_id, _ in truth] == list(range(1, k + away + during + 2))
    missed = truth[k:]
    lost = sorted(set(missed) - set(got))
    twice = len(got) - len(set(got))
    assert got == missed, f"{scaled.stack}: lost {lost}, {twice} twice, got {got}"
