"""The chat server's own choices, beyond the protocol the conformance suite checks."""

from __future__ import annotations

import asyncio

import pytest
from websockets.exceptions import InvalidStatus

from course_ws import BackgroundServer, serve_in_background
from course_ws.clients.chat import ChatClient
from course_ws.clients.metrics import get_metrics
from course_ws.clients.waiting import wait_dropped, wait_until
from course_ws.lab.fanout import stalled_client


async def test_dropping_a_slow_member_is_logged_in_the_servers_log_not_printed(capfd):
    with serve_in_background("chat", message_rate=1e4, message_burst=10_000) as server:
        slow = await ChatClient.connect(server.url, "slow-room", user="slow")
        slow.websocket.transport.pause_reading()
        async with await ChatClient.connect(server.url, "slow-room", user="talker") as talker:
            for _ in range(400):
                await talker.say("x" * 4000)
                await talker.event()
        slow.websocket.transport.abort()
        await asyncio.sleep(0.1)
    assert any(" WARNING course_ws.servers.fanout: closing " in line for line in server.logs)
    assert capfd.readouterr() == ("", "")


async def test_a_client_leaving_politely_during_its_replay_is_not_an_error():
    """A long ?since= replay is still being sent when the client closes with 1000."""
    with serve_in_background("chat", message_rate=1e4, message_burst=10_000) as server:
        async with await ChatClient.connect(server.url, "history", user="talker") as talker:
            for _ in range(300):  # 1.2 MB of history
                await talker.say("x" * 4000)
                await talker.next("message")
        late = await ChatClient.connect(
            server.url, "history", user="late", since=0, close_timeout=0.5
        )
        await late.close()  # while the server is still replaying
        await asyncio.sleep(0.2)
    failures = [line for line in server.logs if "handler failed" in line]
    assert not failures, failures[0]


async def count_accepted(client: ChatClient, says: int) -> int:
    """Say ``says`` times; how many became messages (the rest were rate limited)."""
    for n in range(says):
        await client.say(f"m{n}")
    accepted = 0
    for _ in range(says):
        event = await client.event()
        while event["type"] not in ("message", "error"):
            event = await client.event()
        accepted += event["type"] == "message"
    return accepted


async def test_reconnecting_in_a_loop_gains_no_messages():
    """The rate limit belongs to the client's address, not to one connection."""
    with serve_in_background("chat", message_rate=0.5, message_burst=5) as server:
        accepted = 0
        for _ in range(10):
            async with await ChatClient.connect(server.url, "loop", user="flood") as client:
                accepted += await count_accepted(client, 5)
    assert accepted <= 6, accepted


async def test_a_trusted_proxys_clients_are_limited_each_on_their_own():
    options = {"message_rate": 0.01, "message_burst": 1}

    async def two_clients_behind_a_proxy(server: BackgroundServer) -> list[int]:
        counts = []
        for client_ip in ("198.51.100.1", "198.51.100.2"):
            async with await ChatClient.connect(
                server.url, "proxied", additional_headers={"X-Forwarded-For": client_ip}
            ) as client:
                counts.append(await count_accepted(client, 1))
        return counts

    with serve_in_background("chat", trusted_proxy=("127.0.0.1",), **options) as server:
        assert await two_clients_behind_a_proxy(server) == [1, 1]
    with serve_in_background("chat", **options) as untrusted:
        # The header of an untrusted peer is ignored: both are 127.0.0.1, one bucket.
        assert await two_clients_behind_a_proxy(untrusted) == [1, 0]


async def test_connection_attempts_over_the_limit_get_429():
    with serve_in_background("chat", connect_rate=0.01, connect_burst=2) as server:
        for _ in range(2):
            async with await ChatClient.connect(server.url, "limited"):
                pass
        with pytest.raises(InvalidStatus) as refused:
            await ChatClient.connect(server.url, "limited")
    assert refused.value.response.status_code == 429


async def test_a_member_that_stops_reading_is_dropped_within_the_close_timeout():
    """Crossing the backlog limit → 1013 → the TCP connection reset if the close cannot finish."""
    close_timeout = 0.5
    options = {"message_rate": 1e4, "message_burst": 10_000, "close_timeout": close_timeout}
    with serve_in_background("chat", **options) as server:
        stuck = await stalled_client(f"{server.url}/chat/stream?user=stuck")
        try:
            async with await ChatClient.connect(server.url, "stream", user="talker") as talker:
                dropped_1013 = 'course_ws_members_dropped_total{code="1013"}'
                for _ in range(1000):
                    await talker.say("x" * 4000)
                    await talker.next("message")
                    if (await asyncio.to_thread(get_metrics, server.http_url)).get(dropped_1013):
                        break
                crossed = asyncio.get_running_loop().time()  # just after: an underestimate
                dropped = await wait_dropped(stuck, within=close_timeout + 3)
            print(f"dropped {(dropped - crossed) * 1000:.0f} ms after crossing the limit")
            assert dropped - crossed <= close_timeout + 1
        finally:
            stuck.transport.abort()


async def test_history_is_bounded_in_bytes_per_room_and_for_idle_rooms():
    options = {"history_bytes": 64 * 1024, "idle_history_bytes": 100 * 1024}
    with serve_in_background("chat", message_rate=1e4, message_burst=10_000, **options) as server:
        for room in ("one", "two", "three"):
            async with await ChatClient.connect(server.url, room) as client:
                for _ in range(50):  # 50 x 4,096 emoji: 800 kB of text per room
                    await client.say("😀" * 4096)
                    await client.next("message")
                kept = (await asyncio.to_thread(get_metrics, server.http_url))[
                    "course_ws_history_bytes"
                ]
                assert kept <= 100 * 1024 + 64 * 1024  # idle rooms' cap + this room's
        await wait_until(
            lambda: get_metrics(server.http_url)["course_ws_rooms_active"] == 0,
            within=5,
            what="everyone gone",
        )
        everyone_left = get_metrics(server.http_url)
    assert everyone_left["course_ws_history_bytes"] <= 100 * 1024
    assert everyone_left["course_ws_history_rooms"] <= 3
