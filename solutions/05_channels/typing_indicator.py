"""Exercise 05 · typing_indicator — "ada is typing…", sent to the room's group, never stored.

A typing indicator is not a message: nobody needs it a minute later, so it takes
no id, is not written to the database, and is never replayed by ``?since=``. It
only has to reach the others in the room *now*. That is what a Channels group is
for: every connection of the room puts its own channel in the group
``typing.{room}``, and one ``group_send`` puts a copy of an event on each of them;
Channels hands that copy to the consumer's method named after the event's
``type`` — ``"chat.typing"`` is handled by ``chat_typing``.

The chat itself is the package's consumer (``ChatConsumer``,
``course_ws/servers/_channels/consumers.py``): messages, history and presence
work as they do on the ``channels`` server. Extend it:

1. **Join the group.** In ``connect``, after ``await super().connect()`` (which
   admits and joins the room, or refuses): if ``self.session`` is ``None`` there is
   no member (closed while joining); else ``self.group = typing_group(room)`` and
   ``await self.channel_layer.group_add(self.group, self.channel_name)``.
2. **A typing frame goes to the group, at most once a second.** In ``receive``: a
   frame that is not ``{"type": "typing"}`` (``is_typing``) is the chat's,
   ``await super().receive(text_data, bytes_data)``. A typing frame from a member
   (``self.session`` not ``None``) goes out if ``TYPING_INTERVAL`` seconds have passed
   since this member's last one went out (``time.monotonic()``, kept in
   ``self.typed_at``), else it is dropped: ``await self.channel_layer.group_send(
   self.group, {"type": "chat.typing", "user": ..., "sender": self.channel_name})``.
3. **``chat_typing`` hands it to the others.** Skip the event that this connection
   sent (``event["sender"] == self.channel_name``: the sender knows it is typing),
   and a connection that is no longer a member; else offer ``{"type": "typing",
   "room": ..., "user": event["user"]}`` (``dumps``, the chat's compact JSON) to
   this member's outbox: ``self.chat.fanout.offer(self.outbox, ...)`` — in order with
   the room's other events, and never waiting on a slow client.
4. **Leave the group.** In ``leave`` (which the package's consumer calls from
   ``disconnect``, and however else the consumer ends): if ``self.group`` is set,
   ``group_discard`` it and set it back to ``None``; then ``await super().leave()``.

Why drop, and not queue, the typing frames over the limit? An indicator is a
*state* ("ada is typing"), not a series of events: a client shows it for a few
seconds after the last one it got, and a member still typing sends another soon.
Dropping bounds what one member costs the room — at most one ``group_send`` a
second, whatever it sends; typing frames do not go through the chat's message rate
limit, so without this a client could make the group carry thousands a second.

Written for you: Django's settings (once per process), ``typing_group``,
``is_typing``, the ``__init__``, and the application. ``channel_layer_alias =
DEFAULT_CHANNEL_LAYER`` gives each connection a channel on the process's default
layer (``CHANNEL_LAYERS["default"]``, in memory here: one process, one event loop —
serve this app once per process; with ``channels_redis``, chapter 06, the groups
reach every process). The chat's own messages still go through its bus.

Try it: ``uvicorn typing_indicator:app`` from this folder, two members as in
``chat_consumer``, and send ``{"type": "typing"}`` from one of them. Check your work
with ``course_ws.check("typing_indicator")`` in a notebook, or
``course-ws check typing_indicator`` in a terminal.
"""

import json
import math
import time
from typing import Any

from course_ws.options import ServeOptions
from course_ws.servers._channels.settings import configure

OPTIONS = ServeOptions()
configure(OPTIONS.database)  # Django's settings: before anything imports Django's models

from channels import DEFAULT_CHANNEL_LAYER  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from course_ws.chat.protocol import dumps  # noqa: E402
from course_ws.servers._asgi_host import ASGIApp  # noqa: E402
from course_ws.servers._channels.asgi import ChatLifespan  # noqa: E402
from course_ws.servers._channels.chat import ChannelsChat  # noqa: E402
from course_ws.servers._channels.consumers import ChatConsumer  # noqa: E402

TYPING_INTERVAL = 1.0
"""Seconds: each member's typing goes to the group at most once in this long."""


def typing_group(room: str) -> str:
    """The group of ``room``'s typing indicators (a room name is valid in a group name)."""
    return f"typing.{room}"


def is_typing(text_data: str | None) -> bool:
    """Whether a text frame is ``{"type": "typing"}``; anything else is the chat's to judge."""
    if text_data is None:
        return False
    try:
        frame = json.loads(text_data)
    except ValueError:
        return False
    return isinstance(frame, dict) and frame.get("type") == "typing"


class TypingChatConsumer(ChatConsumer):
    """The package's chat consumer, plus typing indicators through a group of the room."""

    channel_layer_alias = DEFAULT_CHANNEL_LAYER
    """A channel on the default layer for each connection: what groups are made of."""

    def __init__(self, chat: ChannelsChat) -> None:
        super().__init__(chat)
        self.group: str | None = None
        """The room's typing group, while this connection is in it."""
        self.typed_at = -math.inf
        """When this member's last typing event went to the group (``time.monotonic()``)."""

    async def connect(self) -> None:
        """Join the room (the chat's), then its typing group."""
        await super().connect()
        if self.session is None:
            return  # closed while joining
        self.group = typing_group(self.session.room)
        await self.channel_layer.group_add(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """A typing frame goes to the group (at most once an interval); the rest to the chat."""
        if not is_typing(text_data):
            await super().receive(text_data, bytes_data)
            return
        if self.session is None or self.group is None:
            return
        now = time.monotonic()
        if now - self.typed_at < TYPING_INTERVAL:
            return  # dropped: the others were told less than an interval ago
        self.typed_at = now
        event = {"type": "chat.typing", "user": self.session.user, "sender": self.channel_name}
        await self.channel_layer.group_send(self.group, event)

    async def chat_typing(self, event: dict[str, Any]) -> None:
        """A member of the room is typing: tell this one, unless it is the one typing."""
        if event["sender"] == self.channel_name:
            return
        if self.session is None or self.outbox is None:
            return
        typing = {"type": "typing", "room": self.session.room, "user": event["user"]}
        self.chat.fanout.offer(self.outbox, dumps(typing))

    async def leave(self) -> None:
        """Leave the typing group, then the room."""
        if self.group is not None:
            group, self.group = self.group, None
            await self.channel_layer.group_discard(group, self.channel_name)
        await super().leave()


def application(chat: ChannelsChat) -> ASGIApp:
    """The ASGI app: the typing chat at ``/chat/<room>``, served by ``chat`` (written for you)."""
    routes = URLRouter([path("chat/<str:room>", TypingChatConsumer.as_asgi(chat=chat))])
    return ChatLifespan(ProtocolTypeRouter({"websocket": routes}), chat)


app = application(ChannelsChat(OPTIONS))
"""What ``uvicorn typing_indicator:app`` serves."""
