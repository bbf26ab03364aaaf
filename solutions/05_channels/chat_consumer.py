"""Exercise 05 · chat_consumer — the course's chat as a Channels consumer: you write it.

The chat is already written, without any I/O (``ChatService``, chapters 03-04),
and so is everything Channels needs around it: the database is the store, the
channel layer is the bus (``ChannelsChat``, ``course_ws/servers/_channels/chat.py``).
What is left is the adapter: the consumer of ``/chat/{room}``. A Channels consumer
is *event-driven*: no loop of your own, but one method per ASGI event, named after
its ``type`` (``websocket.connect`` → ``websocket_connect``), which Channels calls
one at a time, in order, each to its end. So the member that chapter 04 wrote as
one ``async with`` block is split here in three:

1. **``websocket_connect``: admit or refuse, before accepting.**
   ``decision = self.chat.service.admit(request_target(self.scope), address)``
   (``address``: ``peer_address(self.scope, self.chat.options.trusted_proxy)``). A
   ``Refusal`` (404 for a bad room name, 400 for a malformed ``?user=`` or
   ``?since=``) is a real HTTP answer: ``await refuse(self.scope, self.send,
   decision.status, text)`` — then ``raise StopConsumer()``, Channels' way to end a
   consumer.
2. **Accept, and join.** ``await self.send({"type": "websocket.accept"})``. Then
   enter two async context managers on ``self.members``, an ``AsyncExitStack``
   that stays open across events: the connection's outbox
   (``self.open_outbox(name)``), and ``self.chat.service.member(decision, outbox,
   self.send_text)``, which sends the welcome and the ``?since=`` replay (read from
   the database) and puts the outbox in the room. Keep both:
   ``self.outbox = await self.members.enter_async_context(...)``, the same for
   ``self.session``. A ``TimeoutError`` there (a client too slow to take its
   welcome) is closed with ``CloseCode.TRY_AGAIN_LATER`` and ``"too slow to join"``;
   an ``OSError`` means the client left meanwhile: nothing to do.
3. **``websocket_receive``: one frame in, one action out.** The frame is
   ``message["text"]``, or ``message["bytes"]`` for a binary one.
   ``action = await self.chat.service.handle(self.session, frame)``: ``None`` (a
   message, stored and published) needs nothing; a ``Reply`` goes through the
   outbox, ``self.chat.fanout.offer(self.outbox, action.event)``; a ``Close``
   (1003 for a binary frame) is ``await self.close(action.code, action.reason)``.
4. **``close``**: forget the session (nothing more is handled), ``await
   self.outbox.aclose()`` (nothing may follow a close frame), then send
   ``{"type": "websocket.close", "code": code, "reason": reason}``.
5. **``websocket_disconnect``: leave.** ``await self.members.aclose()`` leaves the
   room (the others hear it) and stops the outbox; then ``raise StopConsumer()``,
   already written.

Written for you: Django's settings (once per process, before any model is
imported), the ``__init__``, ``send_text``, ``open_outbox``, and the application
(``ProtocolTypeRouter`` → ``URLRouter`` → your consumer; its lifespan migrates the
database at startup). ``channel_layer_alias = None`` switches off Channels'
channel per connection: the room's events reach this process once, through the
bus, and the room's fan-out offers them to each member's outbox. The package's
``course_ws/servers/_channels/consumers.py`` is the same adapter, with metrics, a
close bounded in time, 1012 when the bus lost messages, and a ``finally`` around
``__call__`` that leaves the room even when a handler crashed or the consumer was
cancelled — ``websocket_disconnect`` is the only way out here.

Try it: ``uvicorn chat_consumer:app`` from this folder, then in two terminals
``python -m websockets 'ws://127.0.0.1:8000/chat/lobby?user=ada'`` (then ``bob``),
and type ``{"type": "say", "text": "hi"}``; stop the server, start it again, and
join with ``?since=0``: the messages come back from the database. Check your work
with ``course_ws.check("chat_consumer")`` in a notebook, or
``course-ws check chat_consumer`` in a terminal.
"""

from contextlib import AsyncExitStack
from typing import Any

from course_ws.options import ServeOptions
from course_ws.servers._channels.settings import configure

OPTIONS = ServeOptions()
"""The course's defaults; ``OPTIONS.database`` is the SQLite file of the chat."""
configure(OPTIONS.database)  # Django's settings: before anything imports Django's models

from channels.consumer import AsyncConsumer  # noqa: E402
from channels.exceptions import StopConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from course_ws.chat.admission import Refusal  # noqa: E402
from course_ws.chat.session import Close, CloseCode, MemberSession, Reply  # noqa: E402
from course_ws.servers._asgi_chat import Member, peer_address, request_target  # noqa: E402
from course_ws.servers._asgi_host import ASGIApp, asgi_outbox, refuse  # noqa: E402
from course_ws.servers._channels.asgi import ChatLifespan  # noqa: E402
from course_ws.servers._channels.chat import ChannelsChat  # noqa: E402


class ChatConsumer(AsyncConsumer):
    """``/chat/{room}``: one member of a room, from its welcome to its leave."""

    channel_layer_alias = None
    """No channel per connection: the room's events come through the chat's bus."""

    def __init__(self, chat: ChannelsChat) -> None:
        self.chat = chat
        self.members = AsyncExitStack()
        """What ``websocket_connect`` enters and ``websocket_disconnect`` leaves."""
        self.session: MemberSession | None = None
        self.outbox: Member | None = None

    async def send_text(self, event: str) -> None:
        """Send ``event`` at once, not through the outbox (written for you)."""
        await self.send({"type": "websocket.send", "text": event})

    def open_outbox(self, name: str) -> Member:
        """The bounded outbox of this accepted connection, for ``async with`` (written for you).

        Its own task sends what the room offers, in order; a member too far
        behind is closed with 1013 instead of holding up the room.
        """
        return asgi_outbox(
            self.scope, self.send, close_timeout=self.chat.options.close_timeout, name=name
        )

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """Admit or refuse before accepting; accept, then join the room."""
        address = peer_address(self.scope, self.chat.options.trusted_proxy)
        decision = self.chat.service.admit(request_target(self.scope), address)
        if isinstance(decision, Refusal):
            await refuse(self.scope, self.send, decision.status, f"{decision.text}\n")
            raise StopConsumer()
        await self.send({"type": "websocket.accept"})
        self.outbox = await self.members.enter_async_context(
            self.open_outbox(f"{decision.user} in {decision.room}")
        )
        try:
            self.session = await self.members.enter_async_context(
                self.chat.service.member(decision, self.outbox, self.send_text)
            )
        except TimeoutError:
            await self.close(CloseCode.TRY_AGAIN_LATER, "too slow to join")
        except OSError:
            pass  # the client left while we welcomed it: its disconnect follows

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """One frame: the session decides, this carries it out."""
        if self.session is None or self.outbox is None:
            return  # not (or no longer) a member: the close is under way
        text = message.get("text")
        frame = text if text is not None else message.get("bytes") or b""
        action = await self.chat.service.handle(self.session, frame)
        if isinstance(action, Reply):
            self.chat.fanout.offer(self.outbox, action.event)  # in order with live events
        elif isinstance(action, Close):
            await self.close(action.code, action.reason)

    async def close(self, code: int, reason: str) -> None:
        """Stop handling frames, stop the outbox, send the close frame."""
        self.session = None
        if self.outbox is not None:
            await self.outbox.aclose()
        await self.send({"type": "websocket.close", "code": code, "reason": reason})

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """The connection is over: leave the room, and end the consumer."""
        self.session = None
        await self.members.aclose()
        raise StopConsumer()


def application(chat: ChannelsChat) -> ASGIApp:
    """The ASGI app: your consumer at ``/chat/<room>``, served by ``chat`` (written for you)."""
    routes = URLRouter([path("chat/<str:room>", ChatConsumer.as_asgi(chat=chat))])
    return ChatLifespan(ProtocolTypeRouter({"websocket": routes}), chat)


app = application(ChannelsChat(OPTIONS))
"""What ``uvicorn chat_consumer:app`` serves: one chat, kept in ``OPTIONS.database``."""
