"""Checks for exercise ``post_message`` (exercises/04_asgi/post_message.py).

The learner's Starlette ``app`` is served by the course's uvicorn host on a free
127.0.0.1 port (:func:`course_ws.serve_in_background`, a fresh app and chat
service for each check). Members join its ``/chat/{room}`` with
:class:`course_ws.clients.chat.ChatClient`; messages are posted with ``httpx2``,
and the body too large to read is sent over a plain socket, so that the check
decides how much of it goes out. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws import BackgroundServer, serve_in_background
from course_ws.chat.protocol import MAX_POST_BYTES
from course_ws.clients.chat import ChatClient

TIMEOUT = 2.0
"""Seconds for an answer that should come (it takes milliseconds on loopback)."""


@pytest.fixture
def server(load: Callable[[str], Any]) -> Iterator[BackgroundServer]:
    """The learner's app, loaded afresh (a chat of its own), on a free port."""
    with serve_in_background(load("post_message").app, log_level="info") as running:
        yield running


@pytest.fixture
async def http(server: BackgroundServer) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(base_url=server.http_url, timeout=TIMEOUT) as client:
        yield client


async def post(
    http: httpx2.AsyncClient, room: str, body: bytes, content_type: str = "application/json"
) -> httpx2.Response:
    where = f"POST /rooms/{room}/messages"
    try:
        return await http.post(
            f"/rooms/{room}/messages", content=body, headers={"Content-Type": content_type}
        )
    except httpx2.TimeoutException:
        pytest.fail(f"{where} with {body!r:.60}: no answer within {TIMEOUT:g} s")


def message(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def shown(response: httpx2.Response) -> str:
    return f"{response.status_code} {response.text.strip()!r:.100}"


async def test_a_posted_message_reaches_the_room(server, http):
    """A posted message gets 201 and its id, and a member of the room receives it"""
    try:
        ada = await ChatClient.connect(server.url, "lobby", user="ada", open_timeout=TIMEOUT)
    except (InvalidStatus, TimeoutError, ConnectionClosed) as exc:  # written for you: rare
        pytest.fail(f"joining /chat/lobby as ada failed: {exc!r}")
    async with ada:
        await ada.next("join", timeout=TIMEOUT)
        for number, text in enumerate(["hello from HTTP", "  and again  "], 1):
            response = await post(http, "lobby", message(user="bob", text=text))
            where = f"POSTed {text!r} to lobby"
            assert response.status_code == 201, f"{where}: expected 201, got {shown(response)}"
            expected = {"type": "posted", "room": "lobby", "id": number}
            try:
                answer = response.json()
            except json.JSONDecodeError:
                pytest.fail(f"{where}: expected the JSON {expected}, got {response.text!r:.100}")
            assert answer == expected, f"{where}: expected the answer {expected}, got {answer}"
            kind = response.headers.get("content-type", "")
            assert kind.startswith("application/json"), (
                f"{where}: expected Content-Type application/json, got {kind!r}"
            )
            try:
                event = await ada.event(timeout=TIMEOUT)
            except TimeoutError:
                pytest.fail(f"{where}: ada, in the lobby, received nothing in {TIMEOUT:g} s")
            got = {key: value for key, value in event.items() if key != "ts"}
            sent = {"type": "message", "id": number, "room": "lobby", "user": "bob"}
            sent |= {"text": text.strip()}
            assert got == sent, f"{where}: expected ada to receive {sent} (and a ts), got {event}"


async def test_a_body_that_is_not_a_message_is_400(http):
    """A body that is not {"user": …, "text": …} is refused with 400"""
    for body, why in [
        (b"not json", "not JSON"),
        (message(user="bob"), "no text"),
        (message(user="bob", text="   "), "an empty text"),
        (message(user="b o b", text="hi"), "a malformed user"),
        (message(user="bob", text="hi", admin=True), "an unknown field"),
        (b"[1, 2, 3]", "not an object"),
    ]:
        response = await post(http, "lobby", body)
        assert response.status_code == 400, (
            f"POSTed a body with {why} ({body!r:.60}): expected 400, got {shown(response)}"
        )


async def test_a_body_that_is_not_json_content_is_415(http):
    """A body sent as another Content-Type than application/json is refused with 415"""
    body = message(user="bob", text="hi")
    for content_type in ["text/plain", "application/x-www-form-urlencoded"]:
        response = await post(http, "lobby", body, content_type)
        assert response.status_code == 415, (
            f"POSTed a message as {content_type}: expected 415, got {shown(response)}"
        )


async def test_a_bad_room_name_is_404(http):
    """A room name that breaks the rule is refused with 404"""
    for room in ["no.dots", "r" * 65, "caf%C3%A9"]:
        response = await post(http, room, message(user="bob", text="hi"))
        assert response.status_code == 404, (
            f"POSTed to the room {room!r}: expected 404, got {shown(response)}"
        )


async def test_a_body_too_large_is_413(http):
    """A body over MAX_POST_BYTES is refused with 413"""
    text = "x" * MAX_POST_BYTES
    response = await post(http, "lobby", message(user="bob", text=text))
    assert response.status_code == 413, (
        f"POSTed a body of {MAX_POST_BYTES + 28} bytes: expected 413, got {shown(response)}"
    )


async def test_a_body_too_large_is_refused_before_it_is_all_sent(server):
    """413 comes as soon as the body is over the limit, not once all of it has come"""
    declared = 100 * 1024 * 1024
    head = (
        f"POST /rooms/lobby/messages HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(head.encode() + b"x" * (MAX_POST_BYTES + 1))  # and not one byte more
        await writer.drain()
        try:
            async with asyncio.timeout(TIMEOUT):
                status_line = await reader.readline()
        except TimeoutError:
            pytest.fail(
                f"declared a {declared}-byte body and sent {MAX_POST_BYTES + 1} bytes of it: "
                f"no answer within {TIMEOUT:g} s. Stop reading after MAX_POST_BYTES + 1 bytes "
                "(request.body() waits for all of it)"
            )
    finally:
        writer.close()
    got = status_line.decode("latin-1").strip()
    assert got.startswith("HTTP/1.1 413"), (
        f"declared a {declared}-byte body and sent {MAX_POST_BYTES + 1} bytes of it: "
        f"expected HTTP/1.1 413, got {got!r}"
    )
