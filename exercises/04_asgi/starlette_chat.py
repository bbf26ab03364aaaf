"""Exercise 04 · starlette_chat — the course's chat on Starlette: you write the adapter.

The chat itself is already written, without any I/O: ``ChatService``
(``course_ws/chat/service.py``) decides who may join, what the welcome says, what a
frame means and when to close. A *server* is a thin adapter that moves events
between its stack and that service. Write Starlette's: the endpoint ``chat`` of
``/chat/{room}``, for one connection, from handshake to leave.

1. **Admit or refuse, before accepting.** Ask
   ``service.admit(request_target(websocket.scope), address)`` (``address``:
   ``peer_address(websocket.scope, OPTIONS.trusted_proxy)``). A ``Refusal`` (404
   for a bad room name, 400 for a malformed ``?user=`` or ``?since=``, 429 for an
   address over its limits) becomes a real HTTP answer, the handshake's status:
   ``await websocket.send_denial_response(PlainTextResponse(text, status))`` —
   then return, without accepting.
2. **Accept** the ``Admitted`` handshake: ``await websocket.accept()``.
3. **Be a member.** Open the connection's outbox (``async with open_outbox(websocket,
   name) as outbox:``), then ``async with service.member(admitted, outbox,
   websocket.send_text) as session:`` — that sends the welcome and the ``?since=``
   replay with ``send_text``, and puts ``outbox`` in the room: every event of the
   room is *offered* to it, and its own task writes it out. When the block ends,
   the member leaves and the room hears it.
4. **Frames in, actions out.** Inside the block, for each ``frame`` of
   ``frames(websocket)``, ``action = await service.handle(session, frame)`` and carry
   it out: ``None`` (a message, already published to the room) needs nothing; a
   ``Reply`` (an error event for this member only) is ``fanout.offer(outbox,
   action.event)`` — through the outbox, so it keeps its place among the live
   events; a ``Close`` (1003 for a binary frame…) is ``await outbox.aclose()``
   (nothing may follow a close frame), then ``await websocket.close(action.code,
   action.reason)``, and return.
5. **Routine ends.** ``service.member`` raises ``TimeoutError`` for a client too
   slow to take its welcome: close it with ``CloseCode.TRY_AGAIN_LATER`` (1013)
   and ``"too slow to join"``, after ``outbox.aclose()``. A client that leaves while
   you send makes Starlette raise ``WebSocketDisconnect``: catch it, quietly.

Written for you: the service and its fan-out (one per process), ``frames``,
``open_outbox``, the lifespan and the ``app``. Why an outbox at all: ASGI only
offers ``await send``, and a room that awaited each member in turn would wait for
its slowest one (chapter 04 shows such a room stall). The outbox is bounded; a member
that falls too far behind is closed with 1013 instead. The package's
``course_ws/servers/_starlette_chat.py`` is the same adapter, with metrics and a
close bounded in time.

Try it: ``uvicorn starlette_chat:app`` from this folder, then in two terminals
``python -m websockets 'ws://127.0.0.1:8000/chat/lobby?user=ada'`` (then ``bob``),
and type ``{"type": "say", "text": "hi"}``. Check your work with
``course_ws.check("starlette_chat")`` in a notebook, or
``course-ws check starlette_chat`` in a terminal.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse  # noqa: F401
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect  # noqa: F401

from course_ws.chat.admission import Refusal  # noqa: F401
from course_ws.chat.brokers import open_broker_for
from course_ws.chat.metrics import ServerMetrics
from course_ws.chat.service import ChatService
from course_ws.chat.session import Close, CloseCode, Reply  # noqa: F401
from course_ws.options import ServeOptions
from course_ws.servers._asgi_chat import (  # noqa: F401
    Member,
    OutboxFanout,
    peer_address,
    request_target,
)
from course_ws.servers._asgi_host import asgi_outbox
from course_ws.servers._starlette_chat import asgi_channel

OPTIONS = ServeOptions()
"""The course's defaults: history size, rate limits, presence limit, close timeout."""
metrics = ServerMetrics()
fanout = OutboxFanout(metrics)
"""Offers each event of a room to its members' outboxes, never waiting on any of them."""
service: ChatService[Member] = ChatService(open_broker_for(OPTIONS), fanout, OPTIONS, metrics)
"""The chat of this process: rooms, history, limits; members are their outboxes."""


async def frames(websocket: WebSocket) -> AsyncIterator[str | bytes]:
    """The frames the client sends, text or bytes, until it disconnects (written for you)."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        yield text if text is not None else message.get("bytes") or b""


def open_outbox(websocket: WebSocket, name: str) -> Member:
    """The bounded outbox of an accepted ``websocket``, for ``async with`` (written for you).

    Its writer task sends what the room offers, in order; a client gone makes it stop.
    """
    _, send = asgi_channel(websocket)  # Starlette's send, with ASGI's OSError for "gone"
    return asgi_outbox(websocket.scope, send, close_timeout=OPTIONS.close_timeout, name=name)


async def chat(websocket: WebSocket) -> None:
    """``/chat/{room}``: admit or refuse, then one member, from its welcome to its leave."""
    # TODO 1: ``decision = service.admit(request_target(websocket.scope), address)``, where
    #         ``address = peer_address(websocket.scope, OPTIONS.trusted_proxy)``. For a
    #         ``Refusal``: ``await websocket.send_denial_response(PlainTextResponse(...))``
    #         with ``decision.text`` (and a newline) and ``decision.status``; then return.
    # TODO 2: the decision is ``Admitted``: ``await websocket.accept()``.
    # TODO 3: ``async with open_outbox(websocket, decision.user) as outbox:``, and in it
    #         ``async with service.member(decision, outbox, websocket.send_text) as session:``
    # TODO 4: in that, ``async for frame in frames(websocket):``
    #         ``action = await service.handle(session, frame)``; a ``Reply``:
    #         ``fanout.offer(outbox, action.event)``; a ``Close``: ``await outbox.aclose()``,
    #         ``await websocket.close(action.code, action.reason)`` and return.
    # TODO 5: around TODO 3's ``service.member`` block (inside the outbox's): on
    #         ``TimeoutError``, ``await outbox.aclose()`` and close with
    #         ``CloseCode.TRY_AGAIN_LATER`` and ``"too slow to join"``; on
    #         ``WebSocketDisconnect``, nothing: the client left.


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    """Nothing to start; at shutdown, after every client is gone, close the service."""
    yield
    await service.aclose()


app = Starlette(routes=[WebSocketRoute("/chat/{room}", chat)], lifespan=lifespan)
