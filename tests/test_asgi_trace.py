"""``AsgiTrace``: the middleware that records an ASGI app's scope and events (notebook 04a).

First in process, calling the middleware with an app and ``receive``/``send``
coroutines of our own: every message passes through unchanged, in order, and a
``send`` that raises is recorded and re-raised. Then on real uvicorn over
loopback, both WebSocket implementations: the sequence of one connection, a
refusal through ``websocket.http.response``, and a close before accept (403).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from enum import IntEnum
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from course_ws.lab.asgi_trace import AsgiTrace, describe_scope, preview, summarize
from course_ws.lab.plain_uvicorn import serve_with_uvicorn
from course_ws.servers._asgi_host import Message, Receive, Scope, Send
from course_ws.servers.asgi import create_app

IMPLEMENTATIONS = ["websockets-sansio", "wsproto"]
SCOPE: dict[str, Any] = {
    "type": "websocket",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "path": "/echo",
    "query_string": b"x=1",
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8000),
    "headers": [(b"host", b"127.0.0.1:8000"), (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")],
    "extensions": {"websocket.http.response": {}},
}


class Gone(OSError):
    """What an ASGI 2.4 server's send raises once the client has left."""


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": message.get("text")})


def feeder(messages: Iterable[Message]) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        return pending.pop(0)

    return receive


async def test_messages_pass_through_unchanged_and_are_recorded_in_order() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    trace = AsgiTrace(echo)
    incoming = [
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "hi"},
        {"type": "websocket.disconnect", "code": 1000, "reason": "bye"},
    ]
    await trace(SCOPE, feeder(incoming), send)

    assert sent == [{"type": "websocket.accept"}, {"type": "websocket.send", "text": "hi"}]
    call = trace.last()
    assert call.done
    assert [(step.kind, step.name) for step in call.steps] == [
        ("receive", "websocket.connect"),
        ("send", "websocket.accept"),
        ("receive", "websocket.receive"),
        ("send", "websocket.send"),
        ("receive", "websocket.disconnect"),
        ("returned", ""),
    ]
    assert call.received("websocket.disconnect") == [incoming[2]]
    assert call.sent() == sent
    assert str(call).splitlines() == [
        "websocket /echo?x=1 from 127.0.0.1:50000",
        "  ← websocket.connect",
        "  → websocket.accept",
        "  ← websocket.receive            text='hi'",
        "  → websocket.send               text='hi'",
        "  ← websocket.disconnect         code=1000 reason='bye'",
        "  ■ app returned",
    ]
    times = [step.at for step in call.steps]
    assert times == sorted(times)
    assert call.ended == times[-1]


async def test_a_send_that_raises_is_recorded_and_raised_again() -> None:
    async def send(message: Message) -> None:
        if message["type"] == "websocket.send":
            raise Gone("the client left")

    trace = AsgiTrace(echo)
    incoming = [{"type": "websocket.connect"}, {"type": "websocket.receive", "text": "hi"}]
    with pytest.raises(Gone):
        await trace(SCOPE, feeder(incoming), send)

    lines = str(trace.last()).splitlines()
    assert lines[-3:] == [
        "  → websocket.send               text='hi'",
        "  ✗ send raised Gone: the client left",
        "  ✗ app raised Gone: the client left",
    ]
    assert isinstance(trace.last().steps[-1].error, Gone)


async def test_only_the_chosen_scope_types_are_recorded() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    http_scope = {"type": "http", "method": "GET", "path": "/healthz", "query_string": b""}
    quiet = AsgiTrace(app)
    await quiet(http_scope, feeder([]), send)
    assert quiet.calls == []
    assert len(sent) == 1  # passed through all the same

    loud = AsgiTrace(app, types=["http"])
    await loud(http_scope, feeder([]), send)
    assert loud.last("http").heading == "http GET /healthz"
    with pytest.raises(LookupError):
        loud.last("websocket")


async def test_clear_keeps_running_calls_and_the_timeline_orders_every_call() -> None:
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        if scope["type"] == "lifespan":
            await release.wait()

    async def send(message: Message) -> None:
        pass

    trace = AsgiTrace(app)
    startup = feeder([{"type": "lifespan.startup"}])
    lifespan = asyncio.create_task(trace({"type": "lifespan"}, startup, send))
    await asyncio.sleep(0)  # the lifespan call starts, and waits
    await trace(SCOPE, feeder([{"type": "websocket.connect"}]), send)

    assert trace.timeline().splitlines() == [
        "lifespan             ← lifespan.startup",
        "websocket /echo?x=1  ← websocket.connect",
        "websocket /echo?x=1  ■ app returned",
    ]
    with pytest.raises(TimeoutError, match="1 lifespan call"):
        await trace.wait_done(kind="lifespan", within=0.05)
    trace.clear()
    assert [call.kind for call in trace.calls] == ["lifespan"]
    release.set()
    await lifespan
    [call] = await trace.wait_done(kind="lifespan", within=1)
    assert call.done


class Code(IntEnum):
    NORMAL = 1000


def test_summaries_are_short_and_deterministic() -> None:
    assert summarize({"type": "websocket.receive", "text": "x" * 50}) == (
        f"text={'x' * 40!r}… (50 chars)"
    )
    assert summarize({"type": "websocket.receive", "bytes": b"\x00\x01"}) == "bytes=b'\\x00\\x01'"
    # wsproto hands over its close codes as an IntEnum: the number is what matters
    assert summarize({"type": "websocket.disconnect", "code": Code.NORMAL, "reason": ""}) == (
        "code=1000"
    )
    assert summarize(
        {"type": "websocket.http.response.body", "body": b"no", "more_body": False}
    ) == ("body=b'no'")
    assert preview("short") == "'short'"
    described = describe_scope(SCOPE)
    assert "sec-websocket-key: <24 bytes, random>" in described
    assert "dGhlIHNhbXBsZSBub25jZQ" not in described
    assert "client: 127.0.0.1:50000" in described
    assert "extensions: {'websocket.http.response': …}" in described


# -- on real uvicorn -------------------------------------------------------------------------


@pytest.mark.parametrize("ws", IMPLEMENTATIONS)
async def test_one_connection_over_uvicorn(ws: str) -> None:
    trace = AsgiTrace(create_app())
    with serve_with_uvicorn(trace, ws=ws) as server:
        async with connect(server.url + "/echo?x=1") as websocket:
            await websocket.send("hello")
            assert await websocket.recv() == "hello"
            await websocket.send(b"\x00\x01")
            assert await websocket.recv() == b"\x00\x01"
            await websocket.close(1000, "bye")
        [call] = await trace.wait_done()
        assert call.scope["asgi"]["spec_version"] == "2.4"
        assert call.scope["query_string"] == b"x=1"
        assert call.heading.startswith("websocket /echo?x=1 from 127.0.0.1:")
        assert [step.name for step in call.steps] == [
            "websocket.connect",
            "websocket.accept",
            "websocket.receive",
            "websocket.send",
            "websocket.receive",
            "websocket.send",
            "websocket.disconnect",
            "",
        ]
        disconnect = call.received("websocket.disconnect")[0]
        assert (disconnect["code"], disconnect["reason"]) == (1000, "bye")
        assert "code=1000 reason='bye'" in str(call)
    lifespan = trace.last("lifespan")
    assert [step.name for step in lifespan.steps] == [
        "lifespan.startup",
        "lifespan.startup.complete",
        "lifespan.shutdown",
        "lifespan.shutdown.complete",
        "",
    ]


async def bouncer(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "websocket":
        return
    await receive()
    await send({"type": "websocket.close", "code": 1008})


@pytest.mark.parametrize("ws", IMPLEMENTATIONS)
async def test_refusals_over_uvicorn(ws: str) -> None:
    trace = AsgiTrace(create_app())
    with serve_with_uvicorn(trace, ws=ws) as server:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(server.url + "/nope"):
                pass
        assert refused.value.response.status_code == 404
        [call] = await trace.wait_done()
        assert [step.name for step in call.steps] == [
            "websocket.connect",
            "websocket.http.response.start",
            "websocket.http.response.body",
            "",
        ]
        assert "status=404" in str(call)
    closed = AsgiTrace(bouncer)
    with serve_with_uvicorn(closed, ws=ws) as server:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(server.url):
                pass
        assert refused.value.response.status_code == 403
        [call] = await closed.wait_done()
        assert [step.name for step in call.steps] == ["websocket.connect", "websocket.close", ""]
