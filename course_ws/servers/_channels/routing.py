"""The WebSocket routes: Channels' ``URLRouter`` matches them as Django matches ``urls.py``.

Each consumer class becomes an ASGI app with ``as_asgi(chat=chat)``: Channels
creates one consumer instance per connection and passes it ``chat``, the
server's :class:`~.chat.ChannelsChat`. The last route catches every other
path, to refuse it with 404 (a ``URLRouter`` that matches nothing raises
``ValueError``, which uvicorn turns into a 500).
"""

from __future__ import annotations

from typing import Any

from django.urls import path, re_path  # type: ignore[import-untyped]

from course_ws.servers._channels.chat import ChannelsChat
from course_ws.servers._channels.consumers import ChatConsumer, EchoConsumer, NoEndpointConsumer


def websocket_urlpatterns(chat: ChannelsChat) -> list[Any]:
    """``/echo``, ``/chat/{room}``, and a 404 for anything else, served by ``chat``."""
    return [
        path("echo", EchoConsumer.as_asgi(chat=chat)),
        path("chat/<str:room>", ChatConsumer.as_asgi(chat=chat)),
        re_path(r"", NoEndpointConsumer.as_asgi(chat=chat)),
    ]
