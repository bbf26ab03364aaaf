"""What is specific to the ``fastapi`` server: admission as a FastAPI dependency.

What every ASGI server must do (1001, stalled readers, 1003, no leaks, the
CLI) is in ``test_asgi_servers.py``; the conformance, hostile-input and
metrics suites run against it too. Here: the dependency on ``/chat/{room}``
refuses *before accept* with a real HTTP status (400, 404, 429) and the
service's text, not FastAPI's JSON nor a 403 from a close before accept, each
refusal counted once; and no OpenAPI routes beside the course's endpoints.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from course_ws import serve_in_background
from course_ws.clients.chat import ChatClient, chat_url
from course_ws.clients.probes import (
    fresh_room,
    handshake_refusal,
    scrape,
)

NAME = "fastapi"
FAST = {"message_rate": 10_000.0, "message_burst": 10_000}


@pytest.mark.parametrize(
    ("target", "status", "says"),
    [
        ("/chat/{room}?user=no%20spaces", 400, "user must be 1-32 characters"),
        ("/chat/{room}?since=soon", 400, "since must be a message id"),
        ("/chat/{room}?user=a&user=b%20c", 400, "user must be"),  # the last one counts
        ("/chat/no!such!room", 404, "no chat room at /chat/no!such!room"),
    ],
)
async def test_the_dependency_refuses_before_accept_with_the_service_status(
    target: str, status: int, says: str
) -> None:
    with serve_in_background(NAME, log_level="info", **FAST) as server:
        url = server.url + target.format(room=fresh_room())
        refusal = await handshake_refusal(url)
        assert refusal is not None, "the handshake was accepted"
        assert refusal.status == status
        assert refusal.content_type.startswith("text/plain"), "not FastAPI's JSON detail"
        assert says in refusal.text
        found = await scrape(server.http_url)
        logs = "\n".join(server.logs)
    assert found[f'course_ws_handshake_refusals_total{{status="{status}"}}'] == 1  # not twice
    assert found["course_ws_connections"] == 0
    assert "[accepted]" not in logs
    assert "Traceback" not in logs


async def test_the_dependency_refuses_over_the_per_address_limit_with_429() -> None:
    with serve_in_background(NAME, max_connections_per_address=1, **FAST) as server:
        name = fresh_room()
        async with await ChatClient.connect(server.url, name, user="first") as first:
            refusal = await handshake_refusal(chat_url(server.url, name, user="second"))
            assert refusal is not None
            assert refusal.status == 429
            assert refusal.content_type.startswith("text/plain")
            await first.say("still here")
            assert (await first.next("message"))["text"] == "still here"
        found = await scrape(server.http_url)
    assert found['course_ws_handshake_refusals_total{status="429"}'] == 1


async def test_an_admitted_member_gets_what_it_asked_for() -> None:
    with serve_in_background(NAME, **FAST) as server:
        async with await ChatClient.connect(server.url, fresh_room(), user="grace") as client:
            assert client.welcome["user"] == "grace"
            assert client.welcome["members"] == []


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_no_openapi_routes_beside_the_course_endpoints(path: str) -> None:
    with serve_in_background(NAME) as server, pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(server.http_url + path, timeout=5)
    assert error.value.code == 404
