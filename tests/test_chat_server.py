"""The chat server's own choices, beyond the protocol the conformance suite checks."""

from __future__ import annotations

import asyncio

from course_ws import serve_in_background
from course_ws.clients.chat import ChatClient


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
