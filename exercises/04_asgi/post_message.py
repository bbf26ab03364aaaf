"""Exercise 04 · post_message — say something into a chat room over plain HTTP.

A frequent question: how does code that is *not* a WebSocket handler — a form,
a webhook, a cron job — send into a room? Through the same chat service as the
members, so that a posted message gets an id, lands in the room's history and
reaches every member like any other. Write the endpoint:

    POST /rooms/{room}/messages        {"user": "alice", "text": "hi"}

    201 Created    {"type":"posted","room":"lobby","id":7}      (application/json)
    400 Bad Request          the body is not such a message (not JSON, no text…)
    404 Not Found            the room name breaks the rule (1-64 of A-Z a-z 0-9 _ -)
    413 Content Too Large    the body is over MAX_POST_BYTES
    415 Unsupported Media    the Content-Type is not application/json
    429 Too Many Requests    this address is over its message rate

1. ``read_body(request, limit)``: read the body chunk by chunk
   (``async for chunk in request.stream():``) and stop as soon as you hold more than
   ``limit`` bytes; return at most ``limit + 1`` of them — enough to know the body is
   too large. ``await request.body()`` would read *any* size into memory first, and
   wait for all of it: one client sending gigabytes, slowly, is enough.
2. ``post_message(request)``: the room is ``request.path_params["room"]``; read the
   body with ``read_body(request, MAX_POST_BYTES)``; then
   ``outcome = await service.post(room, body, address, content_type)`` with
   ``address = peer_address(request.scope, OPTIONS.trusted_proxy)`` and
   ``content_type = request.headers.get("content-type")``. The service checks all of
   the above and returns either ``Posted`` or ``Refusal``. (Why 415: a web page can
   send a plain form to any site, but not JSON without the browser asking that site
   first; so no page can post into a room in its visitor's name.)
3. Answer a ``Refusal`` with ``PlainTextResponse`` of its ``text`` (and a newline)
   and its ``status``; a ``Posted`` with ``Response(outcome.body, outcome.status,
   media_type="application/json")``.

Written for you: the chat (``StarletteChat``, the package's Starlette endpoints,
whose ``/chat/{room}`` the check's members join), its ``service``, and the ``app``
that routes both. Why Starlette rather than a FastAPI body model (``post: Post``)?
Left to itself, FastAPI reads the whole body first, whatever its size, and answers a
bad one with 422; the chat's contract is 413 and 400.

Try it: ``uvicorn post_message:app`` from this folder, join with
``python -m websockets ws://127.0.0.1:8000/chat/lobby``, then
``curl -i -H 'Content-Type: application/json' -d '{"user": "alice", "text": "hi"}'
http://127.0.0.1:8000/rooms/lobby/messages``.
Check your work with ``course_ws.check("post_message")`` in a notebook, or
``course-ws check post_message`` in a terminal.
"""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute

from course_ws.chat.admission import Refusal  # noqa: F401
from course_ws.chat.protocol import MAX_POST_BYTES  # noqa: F401
from course_ws.options import ServeOptions
from course_ws.servers._asgi_chat import peer_address  # noqa: F401
from course_ws.servers._starlette_chat import StarletteChat

OPTIONS = ServeOptions()
chat = StarletteChat(OPTIONS)
service = chat.service
"""The chat of this process, shared by the WebSocket members and the HTTP endpoint."""


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, but never more than ``limit + 1`` bytes of it."""
    # TODO 1: ``async for chunk in request.stream():`` add each chunk to a ``bytearray``;
    #         stop (``break``) as soon as it holds more than ``limit`` bytes. Return at most
    #         ``limit + 1`` bytes of it, as ``bytes``, instead of this stand-in.
    return b""


async def post_message(request: Request) -> Response:
    """``POST /rooms/{room}/messages``: say the body's message into the room."""
    # TODO 2: the room is ``request.path_params["room"]``; the body
    #         ``await read_body(request, MAX_POST_BYTES)``; the address
    #         ``peer_address(request.scope, OPTIONS.trusted_proxy)``; the content type
    #         ``request.headers.get("content-type")``; then
    #         ``outcome = await service.post(room, body, address, content_type)``.
    # TODO 3: a ``Refusal``: ``PlainTextResponse`` of its text (and a newline) and status;
    #         a ``Posted``: ``Response(outcome.body, outcome.status,
    #         media_type="application/json")``, instead of this stand-in.
    return PlainTextResponse("not written yet: see TODO 2 and 3\n", 501)


app = Starlette(
    routes=[
        WebSocketRoute("/chat/{room}", chat.chat),
        Route("/rooms/{room}/messages", post_message, methods=["POST"]),
    ],
    lifespan=chat.lifespan,
)
