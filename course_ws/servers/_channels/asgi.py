"""The ASGI application of the ``channels`` server: ``ProtocolTypeRouter`` over views and consumers.

As a Django project's ``asgi.py`` has it::

    ProtocolTypeRouter({
        "http": get_asgi_application(),                  # Django's views (urls.py)
        "websocket": AllowedHostsOriginValidator(        # Origin must be an allowed host
            AuthMiddlewareStack(                         # scope["user"] from the session cookie
                URLRouter(websocket_urlpatterns)         # routing.py -> consumers.py
            )
        ),
    })

and around it, what the course's servers all have:

- :class:`~course_ws.servers._asgi_chat.RequestCheck`: a bad request target
  or ``Host`` is refused with 400 before any routing, and every request body
  is read first, bounded;
- :class:`ChatLifespan`: Channels' ``ProtocolTypeRouter`` has no ``lifespan``
  (it raises ``ValueError`` for a scope type it does not route), so this
  wrapper answers it: at startup the migrations run (in a thread) and the
  history gauges load; at shutdown — after the course's uvicorn host closed
  every WebSocket with 1001 — the chat service closes the bus and the store.

**Origin.** Channels' ``AllowedHostsOriginValidator`` refuses a handshake
*without* an ``Origin`` header unless ``ALLOWED_HOSTS`` contains ``"*"``: every
client that is not a browser (the ``websockets`` library, ``curl``, a
service) would be refused. A missing ``Origin`` cannot come from a web page
— browsers always send it — so it is no cross-site WebSocket hijacking, the
attack the check exists for. :class:`BrowserOriginValidator` is Channels'
``OriginValidator`` with that one difference, and a refusal that is a counted
403 with a text that says why (Channels' own closes before accept: a 403
without a body).
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack  # type: ignore[import-untyped]
from channels.routing import ProtocolTypeRouter, URLRouter  # type: ignore[import-untyped]
from channels.security.websocket import OriginValidator  # type: ignore[import-untyped]
from django.conf import settings  # type: ignore[import-untyped]
from django.core.asgi import get_asgi_application  # type: ignore[import-untyped]

from course_ws.servers._asgi_chat import RequestCheck
from course_ws.servers._asgi_host import ASGIApp, Receive, Scope, Send, refuse
from course_ws.servers._channels.chat import ChannelsChat
from course_ws.servers._channels.routing import websocket_urlpatterns
from course_ws.servers._channels.views import SCOPE_KEY

logger = logging.getLogger("course_ws.servers.channels")


class BrowserOriginValidator(OriginValidator):  # type: ignore[misc]
    """Channels' ``OriginValidator``, letting through clients that send no ``Origin``.

    A browser's ``Origin`` must name one of ``allowed`` (Channels' patterns:
    a host, ``.example.com`` for its subdomains, ``*``); a refusal is a counted
    403 with a reason.
    """

    def __init__(self, application: ASGIApp, allowed: list[str], chat: ChannelsChat) -> None:
        super().__init__(application, allowed)
        self.chat = chat

    def valid_origin(self, parsed_origin: Any) -> bool:
        if parsed_origin is None:  # not a browser: no page can make this request
            return True
        return bool(self.validate_origin(parsed_origin))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origins = [value for name, value in scope.get("headers", []) if name == b"origin"]
        origin = origins[-1].decode("latin-1") if origins else None
        if self.valid_origin(urlparse(origin) if origin is not None else None):
            await self.application(scope, receive, send)
            return
        if (await receive())["type"] != "websocket.connect":
            return  # the client left
        self.chat.metrics.refused(403)
        logger.info("refused Origin %r", origin)
        await refuse(scope, send, 403, f"Origin {origin!r} is not allowed here\n")


def allowed_hosts_origin_validator(application: ASGIApp, chat: ChannelsChat) -> ASGIApp:
    """:class:`BrowserOriginValidator` for ``settings.ALLOWED_HOSTS``, as Channels' factory."""
    return BrowserOriginValidator(application, list(settings.ALLOWED_HOSTS), chat)


class WithChat:
    """Puts the server's chat in each HTTP scope, for the views (:func:`.views.chat_of`)."""

    def __init__(self, application: ASGIApp, chat: ChannelsChat) -> None:
        self.application = application
        self.chat = chat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.application({**scope, SCOPE_KEY: self.chat}, receive, send)


class ChatLifespan:
    """The ``lifespan`` scope for an app that has none: start and close the chat."""

    def __init__(self, application: ASGIApp, chat: ChannelsChat) -> None:
        self.application = application
        self.chat = chat

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.application(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.chat.start()
                except Exception as exc:
                    logger.exception("starting the chat failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.chat.aclose()
                except Exception as exc:
                    logger.exception("closing the chat failed")
                    await send({"type": "lifespan.shutdown.failed", "message": repr(exc)})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                return


def application(chat: ChannelsChat) -> ASGIApp:
    """The whole ASGI app of a ``channels`` server whose chat is ``chat``."""
    router = ProtocolTypeRouter(
        {
            "http": WithChat(get_asgi_application(), chat),
            "websocket": allowed_hosts_origin_validator(
                AuthMiddlewareStack(URLRouter(websocket_urlpatterns(chat))), chat
            ),
        }
    )
    return RequestCheck(ChatLifespan(router, chat), chat.metrics)
