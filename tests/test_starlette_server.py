"""What is specific to the ``starlette`` server: refusals before accept.

What every ASGI server must do (1001, stalled readers, 1003, no leaks, the
CLI) is in ``test_asgi_servers.py``; the conformance, hostile-input and
metrics suites run against it too. Here: the service's refusals go out before
accept with their status (``send_denial_response``), in plain text, counted once.
"""

from __future__ import annotations

import pytest

from course_ws import serve_in_background
from course_ws.clients.chat import ChatClient, chat_url
from course_ws.clients.probes import (
    fresh_room,
    handshake_refusal,
    scrape,
)

NAME = "starlette"
FAST = {"message_rate": 10_000.0, "message_burst": 10_000}


@pytest.mark.parametrize(
    ("query", "status", "says"),
    [("?user=no%20spaces", 400, "user must be"), ("?since=-1", 400, "since must be")],
)
async def test_the_service_refuses_before_accept_with_its_status(
    query: str, status: int, says: str
) -> None:
    with serve_in_background(NAME, **FAST) as server:
        refusal = await handshake_refusal(f"{server.url}/chat/{fresh_room()}{query}")
        assert refusal is not None, "the handshake was accepted"
        assert refusal.status == status
        assert refusal.content_type.startswith("text/plain")
        assert says in refusal.text
        found = await scrape(server.http_url)
    assert found[f'course_ws_handshake_refusals_total{{status="{status}"}}'] == 1  # counted once
    assert found["course_ws_connections"] == 0


async def test_over_the_per_address_limit_is_429_before_accept() -> None:
    with serve_in_background(NAME, max_connections_per_address=1, **FAST) as server:
        name = fresh_room()
        async with await ChatClient.connect(server.url, name):
            refusal = await handshake_refusal(chat_url(server.url, name))
        assert refusal is not None
        assert refusal.status == 429
        found = await scrape(server.http_url)
    assert found['course_ws_handshake_refusals_total{status="429"}'] == 1
