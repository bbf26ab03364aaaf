"""Serving ``websockets`` handlers behind a small router, with production settings.

The ``websockets`` library is a WebSocket server, not a web framework: it
routes nothing and serves no pages. The catalogue servers built on it still
answer like the others, so this module adds the little HTTP they need during
the opening handshake (``process_request``): ``GET /healthz`` for load
balancers, plain pages such as the chat client, and 404 for unknown paths, before
any WebSocket is accepted.

``process_request`` runs before ``websockets`` checks the handshake itself, on
a request whose target and headers nobody has validated yet; an exception there
becomes a 500 with a traceback per hostile client. So it never trusts the
request: the target is split by :func:`course_ws.rfc6455.split_target` (400 if
it is not one), and two rules ``websockets`` leaves to the HTTP stack come from
the same codec as the ``raw`` server's: exactly one ``Host`` (400), and a 426
with ``Sec-WebSocket-Version: 13`` for another version (``websockets`` answers a
bare 400 there).
"""

from __future__ import annotations

import http
import logging
import re
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from course_ws import rfc6455
from course_ws.chat.metrics import CONTENT_TYPE, ServerMetrics
from course_ws.chat.protocol import ROOM_PATTERN
from course_ws.options import BACKLOG, ServeOptions
from course_ws.servers import StartServer

RouteHandler = Callable[..., Awaitable[None]]
RequestCheck = Callable[[ServerConnection, Request, dict[str, str]], "Response | None"]
"""Refuse a handshake with an HTTP response (say, 400 for a bad query) or return ``None``;
it counts its own refusals in the server's metrics."""


@dataclass(frozen=True)
class Route:
    """A WebSocket path: a regular expression whose named groups become handler arguments."""

    pattern: re.Pattern[str]
    handler: RouteHandler
    check: RequestCheck | None = None

    @classmethod
    def at(cls, path: str, handler: RouteHandler, check: RequestCheck | None = None) -> Route:
        """A route for ``path``, where ``{name}`` matches one segment by the room rule
        (:data:`course_ws.chat.protocol.ROOM_PATTERN`, defined once)."""
        regex = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>{ROOM_PATTERN.pattern})", path)
        return cls(re.compile(f"{regex}\\Z"), handler, check)

    def match(self, path: str) -> dict[str, str] | None:
        """The path parameters if ``path`` (without query string) is this route's."""
        found = self.pattern.match(path)
        return found.groupdict() if found else None


def text_response(
    status: int, body: str, content_type: str = "text/plain; charset=utf-8"
) -> Response:
    """A complete HTTP response for ``process_request`` to return instead of a handshake."""
    data = body.encode()
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(data)))])
    return Response(status, http.HTTPStatus(status).phrase, headers, data)


def refusal(error: rfc6455.HandshakeError) -> Response:
    """The HTTP answer to a handshake the codec refused: its status, reason and headers."""
    response = text_response(error.status, f"{error.reason}\n")
    for name, value in error.headers:
        response.headers[name] = value
    return response


def codec_request(request: Request) -> rfc6455.Request:
    """The same request as :mod:`course_ws.rfc6455` sees it, so that its checks apply as-is.

    Names are lowercased and a repeated header is joined with ", ", as the
    codec's own parser does (two Hosts then read ``"a, b"``: refused).
    """
    headers: dict[str, str] = {}
    for name, value in request.headers.raw_items():
        name = name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    version = (1, 1) if request.protocol == "HTTP/1.1" else (1, 0)  # websockets parses no other
    return rfc6455.Request(request.method, request.path, version, headers)


@dataclass(frozen=True)
class WebsocketsApp:
    """Routes and pages of one server; ``handler`` and ``process_request`` plug into ``serve``."""

    routes: tuple[Route, ...]
    pages: Mapping[str, Callable[[], Response]]
    logger: logging.Logger
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    """Served at ``GET /metrics``; counts connections and every refusal answered here."""

    def find(self, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route for ``path`` and its parameters, or ``None``."""
        for route in self.routes:
            params = route.match(path)
            if params is not None:
                return route, params
        return None

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer plain HTTP requests; let WebSocket upgrades on known routes through.

        Every refusal answered here (a status of 400 or more) is counted in
        :attr:`metrics`; a route's own check counts its own refusals.
        """
        answer = self._answer(request)
        if isinstance(answer, Response):
            if answer.status_code >= 400:
                self.metrics.refused(answer.status_code)
            return answer
        route, params = answer
        return route.check(connection, request, params) if route.check else None

    def _answer(self, request: Request) -> Response | tuple[Route, dict[str, str]]:
        """The response to a plain HTTP request or a refused one, else the route to check.

        The order matches the ``raw`` server's: a bad target or Host (400),
        then the path (404), then the WebSocket version (426); ``websockets``
        checks the rest of the handshake (405 for another method, ...) after us.
        """
        checked = codec_request(request)
        try:
            path, _ = rfc6455.split_target(checked.path)
            rfc6455.check_host(checked)
        except rfc6455.HandshakeError as error:
            self.logger.info("refused %s %.80s: %s", request.method, request.path, error)
            return refusal(error)
        if path == "/healthz":
            return text_response(200, "ok\n")
        if path == "/metrics":
            return text_response(200, self.metrics.render().decode(), CONTENT_TYPE)
        if path in self.pages and "upgrade" not in request.headers.get("Connection", "").lower():
            return self.pages[path]()
        found = self.find(path)
        if found is None:
            return text_response(404, f"no WebSocket endpoint at {path}\n")
        if request.method == "GET" and "upgrade" in checked.headers:
            try:
                rfc6455.check_version(checked)
            except rfc6455.HandshakeError as error:
                self.logger.info("refused %s: %s", path, error)
                return refusal(error)
        return found

    async def handler(self, websocket: ServerConnection) -> None:
        """Dispatch an accepted connection to its route's handler."""
        request = websocket.request
        if request is None:  # not reachable: handlers run after the handshake
            raise RuntimeError("a connection without its opening request")
        path, _ = rfc6455.split_target(request.path)  # process_request checked it
        found = self.find(path)
        if found is None:  # process_request has already refused such paths
            raise RuntimeError(f"no route for {request.path}")
        route, params = found
        self.metrics.connections.inc()
        try:
            await route.handler(websocket, **params)
        finally:
            self.metrics.connections.dec()


class StartedWebsockets:
    """A started ``websockets`` server; :meth:`aclose` closes every client with 1001."""

    def __init__(
        self, server: Server, cleanup: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        self.server = server
        self.cleanup = cleanup

    async def aclose(self) -> None:
        """Stop listening, send 1001 (going away) to every client and wait for them to go."""
        self.server.close(close_connections=True)
        await self.server.wait_closed()
        if self.cleanup is not None:
            await self.cleanup()


async def start_websockets_app(
    app: WebsocketsApp,
    options: ServeOptions,
    sock: socket.socket,
    *,
    cleanup: Callable[[], Awaitable[None]] | None = None,
    **settings: Any,
) -> StartedWebsockets:
    """Serve ``app`` on ``sock`` with every limit set explicitly from ``options``.

    ``settings`` override the defaults below (for example ``compression=None``);
    ``cleanup`` runs after the last connection has closed.
    """
    limits: dict[str, Any] = {
        "max_size": options.max_size,
        "ping_interval": options.ping_interval,
        "ping_timeout": options.ping_timeout,
        "close_timeout": options.close_timeout,
        "open_timeout": 10,
        "max_queue": 16,
        "write_limit": 2**15,
        "compression": "deflate",
    }
    limits.update(settings)
    server = await serve(
        app.handler,
        sock=sock,
        backlog=BACKLOG,  # asyncio would listen() again with 100
        process_request=app.process_request,
        logger=app.logger,
        **limits,
    )
    return StartedWebsockets(server, cleanup)


def handler_start(handler: RouteHandler) -> StartServer:
    """A start function serving one ``async def handler(websocket)`` on every path."""
    app = WebsocketsApp(
        routes=(Route(re.compile(".*"), handler),),
        pages={},
        logger=logging.getLogger(f"course_ws.servers.{getattr(handler, '__name__', 'handler')}"),
    )

    async def start(options: ServeOptions, sock: socket.socket) -> StartedWebsockets:
        return await start_websockets_app(app, options, sock)

    return start
