"""The chat server's own choices, beyond the protocol the conformance suite checks."""

from __future__ import annotations

import asyncio

from course_ws import serve_in_background
from course_ws.chat.client import ChatClient


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
