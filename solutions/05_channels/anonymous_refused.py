"""Exercise 05 · anonymous_refused — a consumer for logged-in users only.

Channels' ``AuthMiddlewareStack`` does what Django's session and authentication
middleware do for a view: it reads the ``sessionid`` cookie of the handshake,
loads the session from the database and puts its user in ``scope["user"]`` — a
real user, or an ``AnonymousUser`` when there is no cookie, no such session, or
the session was logged out. The browser sends that cookie with the WebSocket
handshake as with any request to the site, so a page whose user logged in over
HTTP needs nothing more (no token in the URL, no header that JavaScript cannot set).

Write ``WhoAmI``, the consumer of ``/whoami``:

1. **Refuse anonymous users, before accepting.** In ``connect``: if
   ``self.scope["user"].is_anonymous``, ``raise DenyConnection`` — Channels then sends
   ``websocket.close`` *before* ``websocket.accept``, and the server refuses the
   handshake: uvicorn and daphne both answer **HTTP 403**. Nothing is accepted, so no
   close code or reason reaches the client: a refusal is an HTTP status.
2. **Accept the others, and greet them by name.** ``await self.accept()``, then
   ``await self.send_json({"type": "hello", "user": user.get_username()})`` — the
   name from the *session*, never from anything the client wrote in the URL.

Why 403 and not 401? A 401 must name, in a ``WWW-Authenticate`` header, a scheme the
client can answer with credentials (RFC 9110, section 15.5.2); a session cookie has
none — the answer is a login page, over HTTP. A 403 is also all that Channels'
API can produce: ``DenyConnection`` (or ``close()`` before ``accept()``) is the only
refusal it has, and daphne has no other. On uvicorn a server *can* send any status
before accept (the ASGI ``websocket.http.response`` extension; the course's servers
use it for 400 and 404, chapter 04), but a browser would not show it anyway: the
WebSocket API reports any failed handshake as an ``error`` event and a close 1006.

Written for you: Django's settings (once per process), the application
(``AuthMiddlewareStack`` around the ``URLRouter``), and ``log_in``, which logs a user
in as a login view would and returns the ``Cookie`` header value to send. In a real
site, put ``AllowedHostsOriginValidator`` around it all: a browser sends the
cookie with handshakes that *other* sites' pages start too (cross-site WebSocket
hijacking), and the ``Origin`` check is what stops them.

Try it: ``uvicorn anonymous_refused:app`` from this folder; in a notebook,
``cookie = await database_sync_to_async(log_in)("ada")`` (``from channels.db import
database_sync_to_async``; the ORM is synchronous: a thread, never the event loop),
then ``connect("ws://127.0.0.1:8000/whoami", additional_headers={"Cookie": cookie})``
and ``await websocket.recv()``; without the cookie, ``connect`` raises
``InvalidStatus`` (HTTP 403). Check your work with ``course_ws.check("anonymous_refused")``
in a notebook, or ``course-ws check anonymous_refused`` in a terminal.
"""

from typing import Any

from course_ws.options import ServeOptions
from course_ws.servers._channels.settings import configure

OPTIONS = ServeOptions()
configure(OPTIONS.database)  # Django's settings: before anything imports Django's models

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.exceptions import DenyConnection  # noqa: E402
from channels.generic.websocket import AsyncJsonWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model, login  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.http import HttpRequest  # noqa: E402
from django.urls import path  # noqa: E402

from course_ws.servers._channels.chat import migrate  # noqa: E402


class WhoAmI(AsyncJsonWebsocketConsumer):
    """``/whoami``: greets a logged-in user by name; refuses anyone else before accepting."""

    channel_layer_alias = None
    """No groups here: no channel on the layer for each connection."""

    async def connect(self) -> None:
        """Refuse an anonymous user (403); accept and greet a logged-in one."""
        user = self.scope["user"]
        if user.is_anonymous:
            raise DenyConnection
        await self.accept()
        await self.send_json({"type": "hello", "user": user.get_username()})


def log_in(username: str) -> str:
    """Log ``username`` in (created if new) as a login view would; the ``Cookie`` to send.

    Sync code (the ORM): call it in a thread, ``await database_sync_to_async(log_in)("ada")``.
    The tables are created first if the database is new (written for you).
    """
    migrate()
    user, created = get_user_model().objects.get_or_create(username=username)
    if created:
        user.set_unusable_password()  # this user logs in here only
        user.save()
    request = HttpRequest()
    request.session = SessionStore()
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session.save()
    return f"{settings.SESSION_COOKIE_NAME}={request.session.session_key}"


app: Any = ProtocolTypeRouter(
    {"websocket": AuthMiddlewareStack(URLRouter([path("whoami", WhoAmI.as_asgi())]))}
)
"""What ``uvicorn anonymous_refused:app`` serves: ``scope["user"]`` from the session cookie."""
