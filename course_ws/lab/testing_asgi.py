"""An ASGI app's WebSockets tested in process, on the test's own event loop (notebook 04c).

``httpx2.websockets.ASGIWebSocketTransport`` runs the app as a task of the
caller's loop: no thread, no socket, real WebSocket frames (``wsproto`` on
both ends) in memory. It is not a server, though, and three things a server
does are left to the test (checked against httpx2 2.16.2,
``httpx2/websockets/_transport.py``):

- **the lifespan**: the transport never sends ``lifespan.startup`` or
  ``lifespan.shutdown`` (neither does its HTTP parent, ``ASGITransport``);
  :func:`lifespan` does, on the current loop, and stops with an error if the
  app says ``lifespan.startup.failed``, as uvicorn's ``--lifespan on`` does;
- **``raw_path`` without the query string**: the transport puts the whole
  ``request.url.raw_path`` there (``/chat/lobby?user=alice``), where uvicorn,
  Starlette's ``TestClient`` and httpx2's own HTTP transport put the path
  alone, as the ASGI spec says (``raw_path`` "excluding any query string");
- **the ``websocket.http.response`` extension**: the transport turns a denial
  (``websocket.http.response.start``/``.body``) into ``WebSocketUpgradeError``
  with the app's status and body, but does not announce the extension in the
  scope, so an app that checks for it (as the course's servers do) falls back
  to a close before accept, and the test sees 1008 instead of 400 or 404.

:class:`ServerScopes` fixes the two scope differences; :func:`in_process`
puts everything together::

    async with in_process(create_app()) as client:
        async with client.websocket("/chat/lobby?user=alice") as alice:
            welcome = await alice.receive_json(timeout=1)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import httpx2
from httpx2.websockets import ASGIWebSocketTransport

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WEBSOCKET_DENIAL = "websocket.http.response"
"""The ASGI extension that lets an app refuse a handshake with an HTTP response."""
BASE_URL = "http://testserver"
LIFESPAN_TIMEOUT = 5.0
"""Seconds the app has to answer ``lifespan.startup`` or ``lifespan.shutdown``, and to return."""


class ServerScopes:
    """ASGI middleware: WebSocket scopes as uvicorn builds them, from httpx2's transport's.

    ``raw_path`` loses its query string, the ``websocket.http.response``
    extension is announced, and every ``http`` or ``websocket`` scope gets a
    copy of the lifespan's ``state`` (what Starlette's ``request.state`` reads).
    """

    def __init__(self, app: ASGIApp, state: dict[str, Any] | None = None) -> None:
        self.app = app
        self.state = state if state is not None else {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            raw_path = scope.get("raw_path")
            extensions = dict(scope.get("extensions") or {})
            extensions.setdefault(WEBSOCKET_DENIAL, {})
            scope = {
                **scope,
                "raw_path": raw_path.partition(b"?")[0] if raw_path else raw_path,
                "extensions": extensions,
            }
        if scope["type"] in ("http", "websocket"):
            scope = {**scope, "state": dict(self.state)}
        await self.app(scope, receive, send)


@contextlib.asynccontextmanager
async def lifespan(
    app: ASGIApp, state: dict[str, Any] | None = None, timeout: float = LIFESPAN_TIMEOUT
) -> AsyncIterator[dict[str, Any]]:
    """Run ``app``'s lifespan on the current loop: startup on entry, shutdown on exit.

    Yields the lifespan ``state`` (the dict a Starlette ``lifespan`` may fill).
    Raises :class:`RuntimeError` if the app reports ``lifespan.startup.failed``
    or ``lifespan.shutdown.failed``, or returns without answering; the app's
    own exception if it raises; :class:`TimeoutError` after ``timeout`` s.
    """
    state = state if state is not None else {}
    to_app: asyncio.Queue[Message] = asyncio.Queue()
    from_app: asyncio.Queue[Message] = asyncio.Queue()
    scope: Scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": state}

    returned: Message = {"type": "the app returned"}  # put last, whatever ended the app

    async def send(message: Message) -> None:
        await from_app.put(message)

    async def run() -> None:
        try:
            await app(scope, to_app.get, send)
        finally:
            from_app.put_nowait(returned)

    task = asyncio.create_task(run())

    async def exchange(phase: str) -> None:
        await to_app.put({"type": f"lifespan.{phase}"})
        async with asyncio.timeout(timeout):
            message = await from_app.get()
        if message is returned:
            task.result()  # the app raised: that is the error
            raise RuntimeError(f"the app returned without answering lifespan.{phase}")
        if message["type"] != f"lifespan.{phase}.complete":
            raise RuntimeError(f"{message['type']}: {message.get('message', '')}")

    try:
        await exchange("startup")
        try:
            yield state
        finally:
            await exchange("shutdown")
        async with asyncio.timeout(timeout):
            await task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@contextlib.asynccontextmanager
async def in_process(app: ASGIApp, base_url: str = BASE_URL) -> AsyncIterator[httpx2.AsyncClient]:
    """An ``httpx2.AsyncClient`` that serves ``app`` in process, on the current loop.

    The lifespan runs around the block; WebSocket scopes look like uvicorn's
    (:class:`ServerScopes`). Use ``client.websocket(path)`` for WebSockets
    (a refusal raises ``httpx2.websockets.WebSocketUpgradeError`` with the
    app's status and body) and ``client.get(path)`` and friends for HTTP.
    """
    async with lifespan(app) as state:
        transport = ASGIWebSocketTransport(ServerScopes(app, state))
        async with httpx2.AsyncClient(transport=transport, base_url=base_url) as client:
            yield client
