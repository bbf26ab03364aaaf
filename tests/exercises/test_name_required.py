"""Checks for exercise ``name_required`` (exercises/04_asgi/name_required.py).

The learner's FastAPI ``app`` is served by the course's uvicorn host on a free
127.0.0.1 port (:func:`course_ws.serve_in_background`), and a ``websockets``
client looks at what really goes over the wire: the handshake's status, then the
greeting or the close frame. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws import BackgroundServer, serve_in_background

TIMEOUT = 2.0
"""Seconds for an answer that should come (it takes milliseconds on loopback)."""


@pytest.fixture
def server(load: Callable[[str], Any]) -> Iterator[BackgroundServer]:
    with serve_in_background(load("name_required").app, log_level="info") as running:
        yield running


async def first_answer(server: BackgroundServer, query: str) -> str | ConnectionClosed:
    """What ``/hello{query}`` gets after its handshake: a text, or the close."""
    where = f"/hello{query}"
    try:
        websocket = await connect(server.url + where, open_timeout=TIMEOUT)
    except InvalidStatus as refused:
        status = refused.response.status_code
        pytest.fail(
            f"{where}: the handshake was refused with HTTP {status}, so the client gets no "
            "close code and no reason: accept the WebSocket before raising WebSocketException"
        )
    except TimeoutError:
        pytest.fail(f"{where}: no answer to the handshake within {TIMEOUT:g} s")
    async with websocket:
        try:
            async with asyncio.timeout(TIMEOUT):
                answer = await websocket.recv()
        except ConnectionClosed as closed:
            return closed
        except TimeoutError:
            pytest.fail(f"{where}: accepted, then nothing happened within {TIMEOUT:g} s")
    return answer if isinstance(answer, str) else repr(answer)


def describe(answer: str | ConnectionClosed) -> str:
    if isinstance(answer, ConnectionClosed):
        return f"the connection closed ({answer})"
    return f"the message {answer!r}"


async def expect_1008(server: BackgroundServer, query: str, why: str) -> None:
    where = f"/hello{query}"
    answer = await first_answer(server, query)
    assert isinstance(answer, ConnectionClosed), (
        f"{where} ({why}): expected a close with 1008, got {describe(answer)}"
    )
    received = answer.rcvd
    assert received is not None, f"{where} ({why}): the connection dropped without a close frame"
    assert received.code == 1008, (
        f"{where} ({why}): expected close code 1008 (policy violation), got {received.code}"
    )
    assert received.reason.strip(), (
        f"{where} ({why}): closed with 1008 but no reason; say what to do (?user=NAME)"
    )


async def test_a_name_reaches_the_endpoint(server):
    """With ?user=ada, the endpoint gets the name and greets 'hello, ada'"""
    for name in ["ada", "Bob_2.0", "x" * 32]:
        answer = await first_answer(server, f"?user={name}")
        expected = f"hello, {name}"
        assert answer == expected, (
            f"/hello?user={name}: expected {expected!r}, got {describe(answer)}"
        )


async def test_no_name_is_closed_with_1008(server):
    """Without ?user=, the WebSocket is accepted, then closed with 1008 and a reason"""
    await expect_1008(server, "", "no ?user=")


async def test_an_empty_or_malformed_name_is_closed_with_1008(server):
    """An empty or malformed name is closed with 1008 and a reason too"""
    for query, why in [
        ("?user=", "an empty name"),
        ("?user=ada%20lovelace", "a space in the name"),
        ("?user=" + "x" * 33, "33 characters"),
        ("?since=3", "no user in the query"),
    ]:
        await expect_1008(server, query, why)
