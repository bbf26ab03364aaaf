"""The consumer family of Django Channels, small enough to measure in notebook 05.

Each consumer here differs from the one before by one idea, the way
``channels/generic/websocket.py`` builds its classes (checked against
Channels 4.3.2 and asgiref 3.13):

- :class:`SlowSyncEcho` — a :class:`~channels.generic.websocket.WebsocketConsumer`:
  its handlers are plain functions, run by ``SyncConsumer.dispatch`` (a
  ``database_sync_to_async``) in a thread, one event after the other. Which
  thread? asgiref's ``SyncToAsync`` with ``thread_sensitive=True`` uses
  **one executor with one thread for the whole process** (its class attribute
  ``single_thread_executor``) unless a ``ThreadSensitiveContext`` is active;
  Channels never enters one (Django's ``ASGIHandler`` does, per HTTP
  request). So every sync consumer of the process queues behind the slowest
  handler running — and so does every call of Django's async ORM, which is
  ``sync_to_async`` on the same thread.
- :class:`ThreadPerConnection` — middleware that enters a
  ``ThreadSensitiveContext`` for each connection: each sync consumer gets a
  thread of its own (one thread per open connection), as Django gives each
  HTTP request.
- :class:`SlowAsyncEcho` — an :class:`~channels.generic.websocket.AsyncWebsocketConsumer`:
  no thread at all; still one event at a time *per connection*
  (``await_many_dispatch`` awaits each handler before reading the next event),
  but connections no longer wait for each other.
- :class:`JsonEcho` — an :class:`~channels.generic.websocket.AsyncJsonWebsocketConsumer`:
  ``receive_json``/``send_json``, JSON text frames only.
- :class:`Guarded` — refusing: ``DenyConnection`` before accept (a server
  answers the handshake with 403), ``close(code, reason)`` after it.
- :class:`RoomMember` — groups on the channel layer: ``group_add`` on connect,
  ``group_send`` of a ``chat.message`` event, handled by the method
  ``chat_message`` (dots become underscores), ``group_discard`` on disconnect.

:func:`announce` is a plain (sync) Django view that sends into a room's group
with ``async_to_sync(channel_layer.group_send)``, and :func:`application`
puts everything behind one ``ProtocolTypeRouter``. Django must be configured
first, with ``course_ws.servers._channels.settings.configure(database)``:
nothing here touches the settings at import time.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import ThreadSensitiveContext, async_to_sync
from asgiref.typing import ASGIReceiveCallable, ASGISendCallable, Scope
from channels.exceptions import DenyConnection  # type: ignore[import-untyped]
from channels.generic.websocket import (  # type: ignore[import-untyped]
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
    WebsocketConsumer,
)
from channels.layers import get_channel_layer  # type: ignore[import-untyped]
from channels.routing import ProtocolTypeRouter, URLRouter  # type: ignore[import-untyped]
from django.core.handlers.asgi import ASGIHandler  # type: ignore[import-untyped]
from django.http import HttpRequest, HttpResponse, JsonResponse  # type: ignore[import-untyped]
from django.urls import path, re_path  # type: ignore[import-untyped]
from django.views.decorators.http import require_POST  # type: ignore[import-untyped]

HANDLER_DELAY = 0.2
"""Seconds a slow handler takes by default (a slow query, a blocking library call)."""
MAX_NAME = 16
"""Characters :class:`Guarded` accepts in ``?name=`` before it closes with 1008."""
GROUP_PREFIX = "room."
ROOM = r"(?P<room>[A-Za-z0-9_-]{1,64})"
"""A room name, as the course's chat accepts it: always a valid group name once prefixed."""

ASGIApp = Any  # a Channels app: untyped, as Channels is


def group_for(room: str) -> str:
    """The channel-layer group of a room.

    Group names must be ASCII letters, digits, ``-``, ``_`` or ``.``, and
    shorter than 100 characters (``BaseChannelLayer.require_valid_group_name``
    raises :class:`TypeError` otherwise); a room name of :data:`ROOM` prefixed
    with :data:`GROUP_PREFIX` always is.
    """
    return GROUP_PREFIX + room


def _reply(text: str | None) -> str:
    return json.dumps({"text": text, "thread": threading.current_thread().name})


class SlowSyncEcho(WebsocketConsumer):  # type: ignore[misc]
    """Sync: each text takes ``delay`` seconds of blocking work, then comes back.

    The reply is JSON: ``{"text": ..., "thread": <the thread that ran the handler>}``.
    ``SlowSyncEcho.as_asgi(delay=0.5)`` changes the delay.
    """

    def __init__(self, delay: float = HANDLER_DELAY) -> None:
        super().__init__()
        self.delay = delay

    def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Block for ``delay`` seconds (``time.sleep``: a thread waits), then reply."""
        time.sleep(self.delay)
        self.send(text_data=_reply(text_data))


class SlowAsyncEcho(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Async: each text waits ``delay`` seconds without blocking anyone, then comes back.

    The same reply as :class:`SlowSyncEcho`: here the thread is the server's event loop's.
    """

    def __init__(self, delay: float = HANDLER_DELAY) -> None:
        super().__init__()
        self.delay = delay

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Wait for ``delay`` seconds, letting the loop serve everyone else, then reply."""
        await asyncio.sleep(self.delay)
        await self.send(text_data=_reply(text_data))


class ThreadPerConnection:
    """ASGI middleware: each connection's sync code runs in a thread of its own.

    asgiref gives each ``ThreadSensitiveContext`` its own one-thread executor
    (``SyncToAsync.context_to_thread_executor``), created at the first sync
    call and shut down when the context exits: a thread per open connection,
    instead of one thread for every sync consumer of the process.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        async with ThreadSensitiveContext():
            await self.app(scope, receive, send)


class JsonEcho(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """JSON in, ``{"echo": <it>}`` out; a binary frame raises ``ValueError`` (no text section)."""

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Send the decoded value back, wrapped."""
        await self.send_json({"echo": content})


class Guarded(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Refuses a connection without ``?name=``; closes one whose name is too long.

    No name: ``raise DenyConnection`` in ``connect``, before accept — Channels
    answers with a ``websocket.close`` and the server refuses the handshake.
    A name over :data:`MAX_NAME` characters: accepted, then closed with 1008
    and a reason (``close(code, reason)``; Channels 4.3 sends both). Otherwise
    one greeting, ``hello <name>``.
    """

    async def connect(self) -> None:
        """Deny, accept and close, or accept and greet."""
        query = parse_qs(self.scope["query_string"].decode("latin-1"))
        name = query.get("name", [""])[0]
        if not name:
            raise DenyConnection
        await self.accept()
        if len(name) > MAX_NAME:
            await self.close(code=1008, reason=f"names are at most {MAX_NAME} characters")
        else:
            await self.send(text_data=f"hello {name}")


class RoomMember(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """A member of a room: what it says goes to the room's group, and comes back to everyone.

    Client to server: ``{"text": "..."}``. Server to client, for every message
    of the room (its own included): ``{"type": "message", "room": r, "text": t,
    "sent": <time.monotonic() when it was sent into the group>}``.
    """

    room: str
    group: str

    async def connect(self) -> None:
        """Join the room's group, then accept."""
        self.room = self.scope["url_route"]["kwargs"]["room"]
        self.group = group_for(self.room)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """Send the text to the whole group, as a ``chat.message`` event."""
        text = str(content.get("text", "")) if isinstance(content, dict) else str(content)
        await self.channel_layer.group_send(self.group, chat_event(text))

    async def chat_message(self, event: dict[str, Any]) -> None:
        """Handle a ``chat.message`` event from the group: send it down this socket."""
        await self.send_json(
            {"type": "message", "room": self.room, "text": event["text"], "sent": event["sent"]}
        )

    async def disconnect(self, code: int) -> None:
        """Leave the group (a channel left in it would collect messages until they expire)."""
        await self.channel_layer.group_discard(self.group, self.channel_name)


def chat_event(text: str) -> dict[str, Any]:
    """The channel-layer event :class:`RoomMember` handles: type ``chat.message``."""
    return {"type": "chat.message", "text": text, "sent": time.monotonic()}


@require_POST  # type: ignore[untyped-decorator]
def announce(request: HttpRequest, room: str) -> HttpResponse:
    """A sync Django view: POST a text, and it is sent into the room's group.

    Django runs a sync view in a thread of its own request
    (``sync_to_async(thread_sensitive=True)`` inside a ``ThreadSensitiveContext``),
    and that thread remembers the server's event loop: ``async_to_sync`` runs
    ``group_send`` back on it, where the in-memory layer and the consumers live.
    Answers 202 with the thread that ran the view.
    """
    text = request.body.decode("utf-8", errors="replace")
    async_to_sync(get_channel_layer().group_send)(group_for(room), chat_event(text))
    return JsonResponse({"room": room, "thread": threading.current_thread().name}, status=202)


urlpatterns = [re_path(rf"^rooms/{ROOM}/announce$", announce)]
"""This module is its own URLconf: :class:`LabViews` resolves requests with it."""


class LabViews(ASGIHandler):  # type: ignore[misc]
    """Django's ASGI handler, resolving URLs with this module's ``urlpatterns``.

    The settings' ``ROOT_URLCONF`` belongs to the course's ``channels``
    server; a request with a ``urlconf`` attribute is resolved with that one
    instead (Django's documented hook, usually set by a middleware).
    """

    async def get_response_async(self, request: HttpRequest) -> HttpResponse:
        """Resolve with this module's URLconf, then do what Django does."""
        request.urlconf = __name__
        response: HttpResponse = await super().get_response_async(request)
        return response


def application() -> ASGIApp:
    """The notebook's app: Django views for HTTP, the consumers above for WebSockets.

    WebSocket paths: ``/sync/slow``, ``/sync/slow/own-thread`` (the same
    consumer behind :class:`ThreadPerConnection`), ``/async/slow``,
    ``/json/echo``, ``/guarded``, ``/rooms/<room>``. HTTP:
    ``POST /rooms/<room>/announce``. Call it after Django is configured.
    """
    return ProtocolTypeRouter(
        {
            "http": LabViews(),
            "websocket": URLRouter(
                [
                    path("sync/slow", SlowSyncEcho.as_asgi()),
                    path("sync/slow/own-thread", ThreadPerConnection(SlowSyncEcho.as_asgi())),
                    path("async/slow", SlowAsyncEcho.as_asgi()),
                    path("json/echo", JsonEcho.as_asgi()),
                    path("guarded", Guarded.as_asgi()),
                    re_path(rf"^rooms/{ROOM}$", RoomMember.as_asgi()),
                ]
            ),
        }
    )
