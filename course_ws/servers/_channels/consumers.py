"""The WebSocket endpoints as Channels consumers: ``/chat/{room}``, ``/echo``, and a 404.

A consumer is event-driven: Channels calls one handler per ASGI event —
``connect`` (``websocket.connect``), ``receive`` (each ``websocket.receive``),
``disconnect`` (``websocket.disconnect``) — one at a time, in order, each to
its end. So the chat member that the other ASGI servers write as one loop
(:func:`~course_ws.servers._asgi_chat.run_member`) is split here by event,
with the same chat core underneath:

- ``connect``: :meth:`ChatService.admit <course_ws.chat.service.ChatService.admit>`;
  refuse with the real HTTP status before accepting
  (:func:`~course_ws.servers._asgi_host.refuse`, the ``websocket.http.response``
  extension the course's uvicorn host offers; a close before accept, which
  the server answers with 403, where it is absent), or accept, open the
  member's bounded outbox and join the room (``service.member(...)``, an
  async context manager entered on an :class:`~contextlib.AsyncExitStack`
  that ``disconnect`` closes) — a member too slow to take its welcome and
  replay is closed with 1013;
- ``receive``: :meth:`ChatService.handle <course_ws.chat.service.ChatService.handle>`,
  then a reply into the outbox or a close;
- ``disconnect``: leave the room, stop the outbox.

Channels' own per-consumer channel is switched off (``channel_layer_alias =
None``): the room's events reach this process once, through the bus
(:mod:`.bus`), and the room's fan-out offers them to each member's outbox —
not one ``group_send`` copy per member. Channels (4.2+) already calls
``aclose_old_connections()`` before each handler and after ``disconnect``, as
long-lived consumers must, so that a connection to the database is never
kept past its ``CONN_MAX_AGE``.

Each consumer gets the server's :class:`~.chat.ChannelsChat` from
``as_asgi(chat=...)``: Channels passes those keyword arguments to each
instance it creates (:mod:`.routing`).
"""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import Any

from channels.exceptions import StopConsumer  # type: ignore[import-untyped]
from channels.generic.websocket import AsyncWebsocketConsumer  # type: ignore[import-untyped]

from course_ws.chat.admission import Refusal
from course_ws.chat.service import CannotJoin
from course_ws.chat.session import Close, CloseCode, MemberSession, Reply
from course_ws.servers._asgi_chat import (
    Member,
    SendDeadline,
    cap_send_buffer,
    close_for_certain,
    peer_address,
    request_target,
)
from course_ws.servers._asgi_host import Receive, Scope, Send, asgi_outbox, refuse
from course_ws.servers._channels.chat import ChannelsChat

logger = logging.getLogger("course_ws.servers.channels")


class ChatConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """``/chat/{room}``: one member of a room, from welcome to leave."""

    channel_layer_alias = None
    """No channel per connection: the room's subscription on the bus is per process."""

    def __init__(self, chat: ChannelsChat) -> None:
        super().__init__()
        self.chat = chat
        self.members = AsyncExitStack()
        self.session: MemberSession | None = None
        self.outbox: Member | None = None
        self.counted = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:  # also when a handler raised, or the task was cancelled
            await self.leave()

    async def connect(self) -> None:
        """Admit or refuse before accepting; accept, then join the room."""
        chat = self.chat
        address = peer_address(self.scope, chat.options.trusted_proxy)
        decision = chat.service.admit(request_target(self.scope), address)  # counts refusals
        if isinstance(decision, Refusal):
            await refuse(self.scope, self.base_send, decision.status, f"{decision.text}\n")
            raise StopConsumer
        try:
            await self.accept()
        except OSError:  # the client left before the accept
            raise StopConsumer from None
        chat.metrics.connections.inc()
        self.counted = True
        cap_send_buffer(self.scope)
        name = f"{decision.user} in {decision.room}"
        outbox = asgi_outbox(
            self.scope, self.base_send, close_timeout=chat.options.close_timeout, name=name
        )
        self.outbox = await self.members.enter_async_context(outbox)
        try:
            self.session = await self.members.enter_async_context(
                chat.service.member(decision, outbox, self.send_now)
            )
        except CannotJoin as exc:
            chat.metrics.dropped(CloseCode.TRY_AGAIN_LATER)
            await self.end(CloseCode.TRY_AGAIN_LATER, exc.reason)
            return
        except OSError as exc:  # ASGI 2.4: a send after the disconnect raises
            logger.info("%s left while joining: %r", name, exc)
            return

    async def send_now(self, event: str) -> None:
        """Send ``event`` at once, not through the outbox (the welcome and the replay)."""
        await self.base_send({"type": "websocket.send", "text": event})

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """One frame: publish it, or reply, or close, as the member session decides."""
        session, outbox = self.session, self.outbox
        if session is None or outbox is None:
            return  # not (or no longer) a member: the close is under way
        frame: str | bytes = text_data if text_data is not None else (bytes_data or b"")
        try:
            action = await self.chat.service.handle(session, frame)
        except Exception:
            logger.exception("%s in %s: a message could not be handled", session.user, session.room)
            await self.end(CloseCode.INTERNAL_ERROR, "server error")
            return
        if isinstance(action, Reply):
            self.chat.fanout.offer(outbox, action.event)  # in order with live events
        elif isinstance(action, Close):
            await self.end(action.code, action.reason)

    async def end(self, code: int, reason: str) -> None:
        """Close with ``code`` for certain (aborted after the close timeout); idempotent.

        The member stays in the room until ``disconnect``, which follows.
        """
        self.session = None
        if self.outbox is not None:
            await self.outbox.aclose()  # its writer must not send after the close frame
        await close_for_certain(
            self.scope, self.base_send, code, reason, self.chat.options.close_timeout
        )

    async def disconnect(self, code: int) -> None:
        """The connection is over: leave the room."""
        await self.leave()

    async def leave(self) -> None:
        """Leave the room and stop the outbox; uncount the connection. Idempotent."""
        self.session = None
        await self.members.aclose()
        if self.counted:
            self.counted = False
            self.chat.metrics.connections.dec()


class EchoConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """``/echo``: every message back as it came; 1013 for a client that does not read them.

    The same deadline as every ASGI server's echo
    (:class:`~course_ws.servers._asgi_chat.SendDeadline`): a reply blocked for
    ``--send-timeout`` closes with 1013, aborted after ``--close-timeout``.
    Channels calls ``receive`` once per frame, so the deadline is made at
    ``connect`` and each reply goes through it.
    """

    channel_layer_alias = None

    def __init__(self, chat: ChannelsChat) -> None:
        super().__init__()
        self.chat = chat
        self.counted = False
        self.deadline: SendDeadline | None = None

    async def connect(self) -> None:
        """Accept, and count the connection."""
        try:
            await self.accept()
        except OSError:
            raise StopConsumer from None
        self.chat.metrics.connections.inc()
        self.counted = True
        self.deadline = SendDeadline(
            self.scope, self.base_send, self.chat.metrics, self.chat.options
        )

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Send the frame back within the send timeout."""
        reply: dict[str, Any] = {"type": "websocket.send"}
        if text_data is not None:
            reply["text"] = text_data
        else:
            reply["bytes"] = bytes_data or b""
        assert self.deadline is not None
        try:
            await self.deadline.send(reply)
        except OSError as exc:  # ASGI 2.4: the client is gone; the disconnect follows
            if not self.deadline.dropped:
                logger.info("echo client %s left abruptly: %r", self.scope.get("client"), exc)

    async def disconnect(self, code: int) -> None:
        """Uncount the connection, after a 1013 close under way has finished."""
        if self.deadline is not None:
            await self.deadline.aclose()
        if self.counted:
            self.counted = False
            self.chat.metrics.connections.dec()


class NoEndpointConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Any other path: 404 before accept (Channels' ``URLRouter`` would raise instead)."""

    channel_layer_alias = None

    def __init__(self, chat: ChannelsChat) -> None:
        super().__init__()
        self.chat = chat

    async def connect(self) -> None:
        """Refuse with 404, counted."""
        self.chat.metrics.refused(404)
        path = self.scope.get("path", "")
        await refuse(self.scope, self.base_send, 404, f"no WebSocket endpoint at {path}\n")
        raise StopConsumer
