"""Exercise 04 · asgi_echo — an echo server as a raw ASGI 3 application, no framework.

An ASGI application is one coroutine function, ``app(scope, receive, send)``, that a
server such as uvicorn calls once per connection (and once for the *lifespan* of the
whole server). ``scope["type"]`` says which: ``"websocket"``, ``"http"`` or
``"lifespan"``. The app learns what happens from ``await receive()`` and acts with
``await send({...})``; every event is a plain ``dict`` with a ``"type"``.

Make ``app`` an echo server, one event at a time (notebook 04a does each step live):

1. **Lifespan.** ``lifespan`` answers ``lifespan.startup`` with
   ``{"type": "lifespan.startup.complete"}``, then ``lifespan.shutdown`` with
   ``{"type": "lifespan.shutdown.complete"}``, and returns.
2. **Accept.** ``echo`` receives ``websocket.connect`` first and answers
   ``{"type": "websocket.accept"}``: only then does the client get its
   ``101 Switching Protocols``.
3. **Echo.** Each ``websocket.receive`` carries ``"text"`` (a ``str``) or ``"bytes"``;
   send it back the same way: ``{"type": "websocket.send", "text": ...}`` or
   ``{"type": "websocket.send", "bytes": ...}``. Text stays text, bytes stay bytes.
4. **Disconnect.** ``websocket.disconnect`` (with the client's ``"code"``) is the
   last event of the connection: return. Nothing more will come; an app that calls
   ``receive`` again waits forever.
5. **Plain HTTP.** A ``GET`` that does not ask for a WebSocket is answered
   ``426 Upgrade Required``, with the header ``Upgrade: websocket`` and a short
   plain-text body saying so: ``http.response.start`` (status and headers, as a
   list of ``(bytes, bytes)`` pairs), then ``http.response.body``. 426 rather than
   404: the path exists, it only speaks another protocol.

Every path is the echo: no routing here. ``app`` itself, which dispatches on
``scope["type"]``, is written for you. The package's ``course_ws/servers/asgi.py`` is
the same thing grown into the course's chat server.

Try it: ``uvicorn asgi_echo:app`` from this folder, or
``serve_in_background(asgi_echo.app)`` in a notebook.

Check your work with ``course_ws.check("asgi_echo")`` in a notebook, or
``course-ws check asgi_echo`` in a terminal.
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

UPGRADE_REQUIRED = b"this is a WebSocket echo server: connect with a WebSocket client\n"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI 3 application: one call per connection, and one for the lifespan."""
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
    elif scope["type"] == "websocket":
        await echo(receive, send)
    elif scope["type"] == "http":
        await upgrade_required(send)


async def lifespan(receive: Receive, send: Send) -> None:
    """Say the app started, then that it stopped."""
    # TODO 1: in a loop, ``message = await receive()``; answer ``lifespan.startup`` with
    #         ``lifespan.startup.complete``; answer ``lifespan.shutdown`` with
    #         ``lifespan.shutdown.complete`` and return.


async def echo(receive: Receive, send: Send) -> None:
    """Accept the WebSocket, send every message back as it came, return on disconnect."""
    # TODO 2: in a loop, ``message = await receive()``; answer ``websocket.connect`` with
    #         ``{"type": "websocket.accept"}``.
    # TODO 3: ``websocket.receive``: send back ``message["text"]`` as ``"text"`` when it is
    #         not None, else ``message["bytes"]`` as ``"bytes"``, in a ``websocket.send``.
    # TODO 4: ``websocket.disconnect``: return.


async def upgrade_required(send: Send) -> None:
    """Answer a plain HTTP request: 426, ``Upgrade: websocket``, and why, in plain text."""
    # TODO 5: ``http.response.start`` with ``"status": 426`` and ``"headers"``: a list of
    #         ``(name, value)`` pairs of bytes, names in lower case — ``content-type``
    #         (``text/plain; charset=utf-8``), ``content-length`` and ``upgrade``
    #         (``websocket``); then ``http.response.body`` with ``"body": UPGRADE_REQUIRED``.
