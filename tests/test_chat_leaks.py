"""Nothing leaks: after abrupt disconnects, aborted resumes and simultaneous joins, /metrics is 0.

Every count here is read from the server's own ``GET /metrics``, the way an
operator would read it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from serving import Served, course_ws_serve
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from course_ws import BackgroundServer, serve_in_background
from course_ws.clients.chat import ChatClient, chat_url
from course_ws.clients.metrics import get_metrics
from course_ws.clients.waiting import wait_until
from course_ws.load.system import resident_bytes

GENEROUS = {
    "message_rate": 1e5,
    "message_burst": 100_000,
    "connect_rate": 1e5,
    "connect_burst": 100_000,
}
GAUGES = (
    "course_ws_connections",
    "course_ws_rooms_active",
    "course_ws_room_members",
    "course_ws_broker_subscriptions",
)


def metrics(server: BackgroundServer | Served) -> dict[str, float]:
    return get_metrics(server.http_url)


async def everyone_gone(server: BackgroundServer | Served) -> dict[str, float]:
    await wait_until(
        lambda: all(metrics(server)[name] == 0 for name in GAUGES),
        within=10,
        what="every gauge back to 0",
    )
    return metrics(server)


async def read_messages(client: ChatClient, count: int) -> None:
    """Read what ``client`` said back to itself (a client that does not read cannot close)."""
    for _ in range(count):
        await client.next("message", timeout=5)


async def abrupt_disconnects(server: BackgroundServer | Served, count: int) -> None:
    async def one(number: int) -> None:
        websocket = await connect(chat_url(server.url, f"abrupt-{number % 7}"))
        await websocket.recv()  # the welcome: it is a member now
        websocket.transport.abort()

    for start in range(0, count, 50):
        await asyncio.gather(*(one(n) for n in range(start, min(start + 50, count))))


async def aborted_resumes(server: BackgroundServer | Served, rooms: int, tag: str = "") -> None:
    for number in range(rooms):
        room = f"resume{tag}-{number}"
        async with await ChatClient.connect(server.url, room, user="talker") as talker:
            for _ in range(100):
                await talker.say("x" * 4000)
            await read_messages(talker, 100)
        # Into the now empty room: resume from 0, and vanish during the 400 kB replay.
        websocket = await connect(chat_url(server.url, room, since=0), max_size=2**20)
        websocket.transport.abort()


async def simultaneous_joins(server: BackgroundServer | Served, pairs: int, tag: str = "") -> None:
    async def resume(room: str) -> list[int]:
        async with await ChatClient.connect(server.url, room, since=0) as client:
            ids: list[int] = []
            while len(ids) < 40:
                event = await client.event(timeout=5)
                if event["type"] == "message":
                    ids.append(event["id"])
            return ids

    for number in range(pairs):
        room = f"together{tag}-{number}"
        async with await ChatClient.connect(server.url, room, user="talker") as talker:
            for n in range(20):
                await talker.say(f"before {n}")
            joiners = [asyncio.create_task(resume(room)) for _ in range(2)]
            for n in range(20):
                await talker.say(f"during {n}")
            await read_messages(talker, 40)
            for ids in await asyncio.gather(*joiners):
                assert ids == list(range(1, 41)), f"a gap or a repeat in {room}: {ids}"


@contextmanager
def served_chat(log: Path) -> Iterator[Served]:
    """``course-ws serve chat`` in a process of its own, so its memory is the server's alone."""
    flags = [f"--{name.replace('_', '-')}={value:g}" for name, value in GENEROUS.items()]
    with course_ws_serve("chat", *flags, log=log) as server:
        yield server
    assert "Traceback" not in server.log_text(), server.log_text()


async def test_nothing_leaks_after_abrupt_disconnects_aborted_resumes_and_joins(tmp_path):
    with served_chat(tmp_path / "chat.log") as server:
        # The same work twice: the first run warms up what a process keeps once it has
        # served (allocator arenas, caches); the second must leave nothing more behind.
        rss: list[int] = []
        history: list[float] = []
        for run in ("-a", "-b"):
            await abrupt_disconnects(server, 1000)
            await aborted_resumes(server, 3, run)
            await simultaneous_joins(server, 20, run)
            after = await everyone_gone(server)
            rss.append(resident_bytes([server.process.pid]))
            history.append(after["course_ws_history_bytes"])
        before, kept = rss[0], history[1] - history[0]
        grown = rss[1] - before
        assert history[1] <= 6 * 2**20 + 40 * 2**16  # bounded: the per-room byte cap
        print(f"server RSS {before / 2**20:.1f} MiB, then {grown / 2**20:+.1f} MiB", end=" ")
        print(f"with {kept / 2**20:.2f} MiB more history kept for resuming clients")
        assert grown <= 0.10 * before + kept, (before, grown, kept)


async def test_metrics_count_published_messages_and_refusals():
    with serve_in_background("chat") as server:
        async with await ChatClient.connect(server.url, "counted") as client:
            await client.say("one")
            await client.next("message")
            await client.websocket.send(json.dumps({"type": "nope"}))
            await client.next("error")
            during = metrics(server)
        for target in ("/chat/bad%20room", "/chat/ok?since=x"):
            with pytest.raises(InvalidStatus):
                async with connect(f"{server.url}{target}"):
                    pass
        after = await everyone_gone(server)
    assert during["course_ws_connections"] == 1
    assert during["course_ws_rooms_active"] == 1
    assert during["course_ws_room_members"] == 1
    assert during["course_ws_broker_subscriptions"] == 1
    assert after["course_ws_messages_published_total"] == 1
    assert after['course_ws_handshake_refusals_total{status="400"}'] == 1
    assert after['course_ws_handshake_refusals_total{status="404"}'] == 1
    assert after["course_ws_history_rooms"] == 1
