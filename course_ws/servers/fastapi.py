"""``fastapi``: the course's chat on FastAPI, on uvicorn.

The same endpoints, protocol and plumbing as the ``starlette`` server (FastAPI
is Starlette underneath: both route to
:class:`~course_ws.servers._starlette_chat.StarletteChat`). What FastAPI adds
is shown where it helps:

- **Admission is a dependency.** ``/chat/{room}`` declares
  ``admitted: Annotated[Admitted, Depends(admission)]``; FastAPI solves it
  before the endpoint runs, so before anything is accepted. The dependency
  reads the handshake (``websocket.scope``'s request target and ``headers``,
  via :func:`~course_ws.servers._asgi_chat.request_target` and
  :func:`~course_ws.servers._asgi_chat.peer_address`) and asks the chat
  service, which decides (404 room, 400 ``?user=``/``?since=``, 429). A refusal
  is raised as an ``HTTPException`` with the service's status: raised before
  accept, FastAPI 0.165 (``fastapi/routing.py``, ``websocket_session``) hands it
  to the app's exception handlers like any HTTP error, and Starlette sends the
  handler's response as the WebSocket's HTTP refusal (``websocket.http.response``).
  After accept that is no longer possible: a dependency that has accepted
  raises ``WebSocketException(1008)``, which closes the socket with 1008.
  Raised *before* accept, that exception (and FastAPI's own 1008 for a
  parameter that fails validation) is a close before accept, which uvicorn
  answers with a bare 403: the code and reason never reach the client
  (``tests/test_fastapi_dependencies.py`` shows each case on the wire).
  The dependency gets the raw target rather than ``websocket.query_params``
  (decoded, last value wins): the service parses the query itself, so the
  rules stay in one place.
- **Security classes work on WebSocket routes, but browsers cannot use the
  header ones.** In FastAPI 0.165 ``APIKeyHeader``, ``APIKeyQuery``,
  ``APIKeyCookie``, ``HTTPBearer`` and ``OAuth2PasswordBearer`` take an
  ``HTTPConnection`` (``fastapi/security/api_key.py``, ``oauth2.py``), so on a
  WebSocket route a missing key is an ``HTTPException(401)`` before accept:
  a real 401 over HTTP (older FastAPI versions typed them on ``Request`` and
  failed there; tutorials still say so). But the browser's ``WebSocket`` API
  cannot set headers, so ``Authorization`` and ``X-API-Key`` never arrive from
  a page: browsers authenticate with a cookie or a query parameter.
- **A pydantic model is a request body.** ``POST /rooms/{room}/messages``
  declares ``post: Post``: FastAPI parses and validates the JSON with the chat
  core's own model (:class:`~course_ws.chat.protocol.Post`, the rules once),
  and a validation error is answered 400 with its first error, as the other
  servers answer. The body arrives already read and bounded by
  :class:`~course_ws.servers._asgi_chat.RequestCheck`. Frames on the socket are
  validated by the chat core (:mod:`course_ws.chat.protocol`), not here.
  The OpenAPI docs are off (``/docs`` is not a course endpoint).

Run it with ``course-ws serve fastapi``, or
``uvicorn course_ws.servers.fastapi:create_app --factory`` (without the 1001).
"""

import socket
from typing import Annotated

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from course_ws.chat.admission import Admitted, Refusal
from course_ws.chat.brokers import Broker
from course_ws.chat.protocol import Post
from course_ws.options import ServeOptions
from course_ws.servers._asgi_chat import peer_address, start_chat_app
from course_ws.servers._asgi_host import StartedUvicorn
from course_ws.servers._starlette_chat import Refused, StarletteChat

HTTP_METHODS = ["GET", "HEAD"]


def create_app(options: ServeOptions | None = None, broker: Broker | None = None) -> FastAPI:
    """The FastAPI application, for any ASGI server."""
    chat = StarletteChat(options or ServeOptions(), broker)
    app = FastAPI(
        title="course-ws chat",
        lifespan=chat.lifespan,
        middleware=chat.middleware,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.chat = chat
    for handled, handler in chat.exception_handlers.items():  # 404, 405, refusals: plain text
        app.exception_handler(handled)(handler)

    async def admission(websocket: WebSocket) -> Admitted:
        """Admit this handshake, or refuse it before accept with the service's HTTP status."""
        decision = chat.admit(websocket)
        if isinstance(decision, Refusal):
            raise Refused(decision.status, decision.text)
        return decision

    @app.websocket("/chat/{room}")
    async def chat_room(
        websocket: WebSocket, admitted: Annotated[Admitted, Depends(admission)]
    ) -> None:
        await chat.member(websocket, admitted)

    @app.websocket("/echo")
    async def echo(websocket: WebSocket) -> None:
        await chat.echo(websocket)

    @app.websocket("/{path:path}")
    async def no_endpoint(websocket: WebSocket) -> None:
        await chat.no_endpoint(websocket)

    async def json_only(request: Request) -> None:
        """415 before FastAPI reads the body, unless it is JSON (the service's rule)."""
        refusal = chat.service.refuse_content_type(request.headers.get("content-type"))
        if refusal is not None:
            raise Refused(refusal.status, refusal.text)

    @app.post("/rooms/{room}/messages", status_code=201, dependencies=[Depends(json_only)])
    async def post_message(room: str, post: Post, request: Request) -> Response:
        address = peer_address(request.scope, chat.options.trusted_proxy)
        return chat.posted(await chat.service.post_message(room, post, address))

    @app.exception_handler(RequestValidationError)
    async def bad_body(request: Request, exc: RequestValidationError) -> Response:
        """A body that is not a ``Post``: 400 and the first error, as on every server."""
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:]) or "body"
        return chat.posted(chat.service.refuse_post(f"{where}: {first['msg']}"))

    @app.api_route("/", methods=HTTP_METHODS)
    async def page(request: Request) -> Response:
        return await chat.page(request)

    @app.api_route("/healthz", methods=HTTP_METHODS)
    async def healthz(request: Request) -> Response:
        return await chat.healthz(request)

    @app.api_route("/metrics", methods=HTTP_METHODS)
    async def metrics(request: Request) -> Response:
        return await chat.prometheus(request)

    @app.api_route("/echo", methods=HTTP_METHODS)
    @app.api_route("/chat/{room}", methods=HTTP_METHODS)
    async def upgrade_required(request: Request) -> Response:
        return await chat.upgrade_required(request)

    return app


async def start(options: ServeOptions, sock: socket.socket) -> StartedUvicorn:
    """Serve the chat on ``sock`` with uvicorn, through the course's ASGI host."""
    app = create_app(options)
    return await start_chat_app(app, options, sock, app.state.chat.metrics)
