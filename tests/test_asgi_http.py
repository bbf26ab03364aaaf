"""HTTP on every ASGI server: ``POST /rooms/{room}/messages``, the bounds, the host's refusals.

A message posted over HTTP reaches the room's members like any other, is kept
in the history (so ``?since=`` replays it), and is refused with a status that
says why: 415 not JSON, 400 a bad body, 404 a room that cannot exist, 413 too
large (declared or streamed), 408 too slow, 429 over the address's rate.
Every refusal is counted at ``/metrics``. The request head is bounded too
(431), on both of uvicorn's WebSocket implementations, because uvicorn's
``httptools`` parser on its own would buffer any amount of it; and the
refusals uvicorn's protocols answer themselves (426) are counted too.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest

from course_ws import serve_in_background
from course_ws.chat.protocol import MAX_POST_BYTES, MAX_TEXT
from course_ws.clients.chat import ChatClient
from course_ws.clients.metrics import get_metrics
from course_ws.clients.probes import fresh_room
from course_ws.hosting.catalogue import CATALOGUE
from course_ws.servers._asgi_chat import BODY_TIMEOUT
from course_ws.servers._bounded_http import MAX_REQUEST_HEAD

ASGI_SERVERS = [name for name, entry in CATALOGUE.items() if "uvicorn" in entry.stack]
FAST = {"message_rate": 10_000.0, "message_burst": 10_000}
JSON_HEADERS = {"Content-Type": "application/json"}
ENDLESS = 512 * MAX_REQUEST_HEAD  # 32 MiB: far more than the kernel's buffers hold

pytestmark = pytest.mark.parametrize("name", ASGI_SERVERS)


def post(base: str, room: str, body: object, **kwargs: object) -> httpx.Response:
    headers = kwargs.pop("headers", JSON_HEADERS)
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(
        f"{base}/rooms/{room}/messages", content=content, headers=headers, timeout=10, **kwargs
    )


def refusals(base: str, metric: str = "course_ws_posts_refused_total") -> dict[str, float]:
    values = get_metrics(base)
    return {key: value for key, value in values.items() if key.startswith(metric)}


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1].strip("/"))


async def test_a_posted_message_reaches_the_members_and_the_history(name: str) -> None:
    room = fresh_room()
    with serve_in_background(name, **FAST) as server:
        async with await ChatClient.connect(server.url, room, user="alice") as alice:
            answer = post(server.http_url, room, {"user": "webhook", "text": "  deploy done "})
            assert answer.status_code == 201
            assert answer.headers["content-type"].startswith("application/json")
            posted = answer.json()
            assert posted == {"type": "posted", "room": room, "id": posted["id"]}
            message = await alice.next("message")
            assert (message["id"], message["user"], message["text"]) == (
                posted["id"],
                "webhook",
                "deploy done",
            )
        async with await ChatClient.connect(server.url, room, since=0) as late:
            replayed = await late.next("message")
            assert replayed["id"] == posted["id"]
        published = get_metrics(server.http_url)["course_ws_messages_published_total"]
        assert published == 1


def test_bad_posts_are_refused_with_a_status_that_says_why(name: str) -> None:
    room = fresh_room()
    good = {"user": "bob", "text": "hi"}
    with serve_in_background(name, **FAST) as server:
        base = server.http_url
        assert post(base, room, good, headers={"Content-Type": "text/plain"}).status_code == 415
        assert post(base, room, good, headers={}).status_code == 415
        assert post(base, "no room!", good).status_code == 404
        assert post(base, "x" * 65, good).status_code == 404
        for body in (b"{", b"[1]", {"user": "bob"}, {"user": "b b", "text": "hi"}):
            assert post(base, room, body).status_code == 400, body
        too_long = post(base, room, {"user": "bob", "text": "x" * (MAX_TEXT + 1)})
        assert too_long.status_code == 400
        assert "text" in too_long.text
        assert httpx.get(f"{base}/rooms/{room}/messages", timeout=10).status_code == 405
        assert post(base, room, good).status_code == 201
        assert get_metrics(base)["course_ws_messages_published_total"] == 1
        assert refusals(base) == {
            'course_ws_posts_refused_total{status="400"}': 5.0,
            'course_ws_posts_refused_total{status="404"}': 2.0,
            'course_ws_posts_refused_total{status="415"}': 2.0,
        }


def test_a_body_too_large_is_refused_before_it_is_read(name: str) -> None:
    """Declared too large: 413 at once; streamed too large: 413 once the limit is passed."""
    room = fresh_room()
    with serve_in_background(name, **FAST) as server:
        base = server.http_url
        huge = b'{"user": "bob", "text": "' + b"x" * MAX_POST_BYTES + b'"}'
        assert post(base, room, huge).status_code == 413

        def chunks():  # no Content-Length: chunked transfer encoding
            yield b'{"user": "bob", "text": "'
            for _ in range(64):
                yield b"x" * 1024

        streamed = httpx.post(
            f"{base}/rooms/{room}/messages", content=chunks(), headers=JSON_HEADERS, timeout=10
        )
        assert streamed.status_code == 413
        counted = refusals(base, "course_ws_handshake_refusals_total")
        assert counted == {'course_ws_handshake_refusals_total{status="413"}': 2.0}


def test_a_body_that_never_ends_is_refused_after_the_body_timeout(name: str) -> None:
    room = fresh_room()
    with serve_in_background(name, **FAST) as server:
        port = port_of(server.http_url)
        with socket.create_connection(("127.0.0.1", port), timeout=BODY_TIMEOUT + 5) as sock:
            sock.sendall(
                f"POST /rooms/{room}/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{".encode()
            )
            started = time.monotonic()
            answer = sock.recv(4096)
            waited = time.monotonic() - started
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert BODY_TIMEOUT - 0.5 < waited < BODY_TIMEOUT + 3


@pytest.mark.parametrize("ws", ["websockets-sansio", "wsproto"])
def test_a_request_head_that_never_ends_gets_431(name: str, ws: str) -> None:
    """More than 64 KiB of an unfinished head: 431 and the connection closed, counted."""
    with serve_in_background(name, ws=ws, **FAST) as server:
        port = port_of(server.http_url)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nX-Padding: ".encode()
            )
            sent = 0
            answer = b""
            try:
                while sent < ENDLESS:
                    sock.sendall(b"a" * 8192)
                    sent += 8192
            except (BrokenPipeError, ConnectionResetError):
                pass
            try:
                while chunk := sock.recv(4096):
                    answer += chunk
            except ConnectionResetError:
                pass
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
        assert sent < ENDLESS  # the server closed the connection: the sends failed
        counted = refusals(server.http_url, "course_ws_handshake_refusals_total")
        assert counted == {'course_ws_handshake_refusals_total{status="431"}': 1.0}


def test_posts_over_the_address_rate_get_429(name: str) -> None:
    room = fresh_room()
    with serve_in_background(name, message_rate=0.001, message_burst=3) as server:
        statuses = [
            post(server.http_url, room, {"user": "bob", "text": f"{n}"}).status_code
            for n in range(5)
        ]
        assert statuses == [201, 201, 201, 429, 429]
        assert refusals(server.http_url) == {'course_ws_posts_refused_total{status="429"}': 2.0}


@pytest.mark.parametrize("ws", ["websockets-sansio", "wsproto"])
def test_another_websocket_version_gets_426_and_is_counted(name: str, ws: str) -> None:
    """uvicorn's protocol answers before the app sees the request; the host still counts it."""
    with serve_in_background(name, ws=ws, **FAST) as server:
        port = port_of(server.http_url)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(
                f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 8\r\n\r\n".encode()
            )
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 426 ")
        assert b"sec-websocket-version: 13" in answer.lower()
        counted = refusals(server.http_url, "course_ws_handshake_refusals_total")
        assert counted == {'course_ws_handshake_refusals_total{status="426"}': 1.0}
