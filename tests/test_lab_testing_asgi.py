"""``course_ws.lab.testing_asgi``: the chat servers tested in process, on the test's own loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from httpx2 import AsyncClient
from httpx2.websockets import ASGIWebSocketTransport, WebSocketDisconnect, WebSocketUpgradeError
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket

from course_ws.lab.testing_asgi import WEBSOCKET_DENIAL, ServerScopes, in_process, lifespan
from course_ws.servers import asgi, fastapi, starlette

SERVERS: dict[str, Callable[[], Any]] = {
    "asgi": asgi.create_app,
    "starlette": starlette.create_app,
    "fastapi": fastapi.create_app,
}


@pytest.mark.parametrize("name", SERVERS)
async def test_the_chat_in_process(name: str) -> None:
    async with (
        in_process(SERVERS[name]()) as client,
        client.websocket("/chat/lobby?user=alice") as alice,
    ):
        welcome = await alice.receive_json(timeout=1)
        assert (welcome["type"], welcome["user"]) == ("welcome", "alice")  # the query arrived
        assert (await alice.receive_json(timeout=1))["type"] == "join"
        await alice.send_json({"type": "say", "text": "hi"})
        message = await alice.receive_json(timeout=1)
        assert (message["type"], message["text"], message["id"]) == ("message", "hi", 1)
        await alice.send_bytes(b"\x00")
        with pytest.raises(WebSocketDisconnect) as closed:
            await alice.receive_json(timeout=1)
        assert closed.value.code == 1003


@pytest.mark.parametrize("name", SERVERS)
@pytest.mark.parametrize(
    ("target", "status", "text"),
    [
        ("/chat/lobby?since=x", 400, "since must be a message id"),
        ("/chat/a.b", 404, "no chat room at /chat/a.b"),
        ("/nowhere", 404, "no WebSocket endpoint at /nowhere"),
    ],
)
async def test_a_refusal_has_the_apps_status_and_body(
    name: str, target: str, status: int, text: str
) -> None:
    async with in_process(SERVERS[name]()) as client:
        with pytest.raises(WebSocketUpgradeError) as refused:
            async with client.websocket(target):
                pass
    assert refused.value.response.status_code == status
    assert refused.value.response.text.startswith(text)


async def scope_of(app: Any, target: str) -> dict[str, Any]:
    """The WebSocket scope ``app`` (wrapped or not) receives from httpx2's transport."""
    seen: dict[str, Any] = {}

    async def record(scope: Any, receive: Any, send: Any) -> None:
        seen.update(scope)
        await receive()
        await send({"type": "websocket.accept"})

    async with (
        AsyncClient(transport=ASGIWebSocketTransport(app(record))) as client,
        client.websocket(f"http://testserver{target}"),
    ):
        pass
    return seen


async def test_server_scopes_fixes_what_the_transport_gets_wrong() -> None:
    # If this half fails, httpx2 fixed its transport: notebook 04c and ServerScopes can say so.
    bare = await scope_of(lambda app: app, "/chat/lobby?user=alice")
    assert bare["raw_path"] == b"/chat/lobby?user=alice"
    assert WEBSOCKET_DENIAL not in bare.get("extensions", {})
    fixed = await scope_of(ServerScopes, "/chat/lobby?user=alice")
    assert (fixed["raw_path"], fixed["query_string"]) == (b"/chat/lobby", b"user=alice")
    assert WEBSOCKET_DENIAL in fixed["extensions"]


async def test_the_lifespan_runs_on_this_loop_and_its_state_reaches_the_websocket() -> None:
    events: list[tuple[str, bool]] = []
    here = asyncio.get_running_loop()

    @asynccontextmanager
    async def life(app: Starlette) -> AsyncIterator[dict[str, str]]:
        events.append(("startup", asyncio.get_running_loop() is here))
        yield {"greeting": "hello from the lifespan"}
        events.append(("shutdown", asyncio.get_running_loop() is here))

    async def greet(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(websocket.state.greeting)
        await websocket.close()

    app = Starlette(routes=[WebSocketRoute("/greet", greet)], lifespan=life)
    async with in_process(app) as client:
        assert events == [("startup", True)]
        async with client.websocket("/greet") as websocket:
            assert await websocket.receive_text(timeout=1) == "hello from the lifespan"
    assert events == [("startup", True), ("shutdown", True)]


async def test_the_shutdown_runs_when_the_block_raises() -> None:
    phases: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            phase = (await receive())["type"].removeprefix("lifespan.")
            phases.append(phase)
            await send({"type": f"lifespan.{phase}.complete"})
            if phase == "shutdown":
                return

    with pytest.raises(ZeroDivisionError):
        async with lifespan(app):
            1 / 0  # noqa: B018
    assert phases == ["startup", "shutdown"]


async def test_a_failed_startup_is_an_error() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.raises(RuntimeError, match=r"lifespan\.startup\.failed: no database"):
        async with lifespan(app):
            pytest.fail("the block must not run")


async def test_an_app_that_does_not_answer_the_lifespan_is_an_error() -> None:
    async def websocket_only(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return

    with pytest.raises(RuntimeError, match=r"returned without answering lifespan\.startup"):
        async with lifespan(websocket_only):
            pytest.fail("the block must not run")
