"""The HTTP endpoints as async Django views: the page, health, metrics, and posting a message.

``GET /`` the chat page, ``GET /healthz``, ``GET /metrics`` (Prometheus text),
``POST /rooms/{room}/messages`` (a message said into a room from outside any
WebSocket, through :meth:`ChatService.post <course_ws.chat.service.ChatService.post>`),
426 for a plain ``GET`` of a WebSocket path, 405 for a method an endpoint does
not take, and a plain-text 404 for anything else (``handler404`` in :mod:`.urls`),
each answered as every server of the catalogue answers it.

The views are ``async def``: Django runs them on the event loop, so they must
not use the ORM directly (``SynchronousOnlyOperation``); posting goes through
the chat service, whose store runs its queries in a thread of its own. The
body of a ``POST`` was read already, bounded in size and time, by
:class:`~course_ws.servers._asgi_chat.RequestCheck`, which wraps the whole app.

Each view finds its server's :class:`~.chat.ChannelsChat` in the request's ASGI
scope (:func:`chat_of`), put there by :class:`~.asgi.WithChat`.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.http import HttpRequest, HttpResponse  # type: ignore[import-untyped]

from course_ws.chat.metrics import CONTENT_TYPE
from course_ws.chat.service import Posted
from course_ws.servers._asgi_chat import PAGE, is_websocket_path, peer_address
from course_ws.servers._channels.chat import ChannelsChat

SCOPE_KEY = "course_ws.chat"
"""Where :class:`~.asgi.WithChat` puts the server's chat in each HTTP scope."""
TEXT = "text/plain; charset=utf-8"
READING = ("GET", "HEAD")


def chat_of(request: HttpRequest) -> ChannelsChat:
    """The chat of the server that received ``request``."""
    chat: ChannelsChat = request.scope[SCOPE_KEY]
    return chat


def answer(
    request: HttpRequest,
    status: int,
    text: str,
    headers: Iterable[tuple[str, str]] = (),
    counted: bool = False,
) -> HttpResponse:
    """A plain-text response; a status of 400 or more is counted as a refusal, once."""
    if status >= 400 and not counted:
        chat_of(request).metrics.refused(status)
    response = HttpResponse(text, status=status, content_type=TEXT)
    for name, value in headers:
        response[name] = value
    return response


def not_allowed(request: HttpRequest, allow: str) -> HttpResponse:
    """405, saying which method is allowed."""
    return answer(request, 405, f"{request.method} is not allowed here\n", [("Allow", allow)])


async def page(request: HttpRequest) -> HttpResponse:
    """``GET /``: the browser chat page."""
    if request.method not in READING:
        return not_allowed(request, "GET")
    return HttpResponse(PAGE.read_text(encoding="utf-8"), content_type="text/html; charset=utf-8")


async def healthz(request: HttpRequest) -> HttpResponse:
    """``GET /healthz``: ok, for load balancers."""
    if request.method not in READING:
        return not_allowed(request, "GET")
    return answer(request, 200, "ok\n")


async def metrics(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: the server's metrics in the Prometheus text format."""
    if request.method not in READING:
        return not_allowed(request, "GET")
    return HttpResponse(chat_of(request).metrics.render(), content_type=CONTENT_TYPE)


async def post_message(request: HttpRequest, room: str) -> HttpResponse:
    """``POST /rooms/{room}/messages``: say a message into ``room``; 201 and its id."""
    if request.method != "POST":
        return not_allowed(request, "POST")
    chat = chat_of(request)
    address = peer_address(request.scope, chat.options.trusted_proxy)
    content_type = request.headers.get("content-type")
    result = await chat.service.post(room, request.body, address, content_type)
    if isinstance(result, Posted):
        return HttpResponse(result.body, status=result.status, content_type="application/json")
    return answer(request, result.status, f"{result.text}\n", counted=True)


async def upgrade_required(request: HttpRequest, room: str | None = None) -> HttpResponse:
    """A plain request for a WebSocket endpoint: 426 for ``GET``, saying how to ask."""
    path = request.path
    if not is_websocket_path(path):  # /chat/{room} with a room that breaks the rule
        return not_found(request)
    if request.method not in READING:
        return not_allowed(request, "GET")
    text = f"{path} is a WebSocket endpoint: upgrade to websocket\n"
    return answer(request, 426, text, [("Upgrade", "websocket")])


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 in plain text (Django's ``handler404``: Django calls it as sync code)."""
    return answer(request, 404, f"nothing at {request.path}\n")
