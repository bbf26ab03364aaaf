"""The catalogue: every example server by name, the stack it is built on, and its endpoints.

Servers are imported only when started, so ``course-ws list`` stays fast and a
learner who never opens the Django chapter never imports Django.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from course_ws.servers import StartServer


class UnknownServerError(LookupError):
    """A server name that is not in the catalogue."""

    def __init__(self, name: str) -> None:
        known = ", ".join(CATALOGUE)
        super().__init__(f"unknown server {name!r}: the catalogue has {known}")
        self.name = name


@dataclass(frozen=True)
class CatalogueEntry:
    """One server of the course."""

    name: str
    stack: str
    summary: str
    chapter: str
    endpoints: tuple[str, ...]
    module: str

    def load(self) -> StartServer:
        """Import the server's module and return its ``start`` function."""
        start: StartServer = importlib.import_module(self.module).start
        return start


CHAT_ENDPOINTS = ("/echo", "/chat/{room}", "GET /", "GET /healthz", "GET /metrics")
ASGI_CHAT_ENDPOINTS = (*CHAT_ENDPOINTS, "POST /rooms/{room}/messages")
"""The chat's endpoints, and the HTTP one the ASGI servers add (chapter 04)."""

CATALOGUE: dict[str, CatalogueEntry] = {
    entry.name: entry
    for entry in (
        CatalogueEntry(
            name="raw",
            stack="asyncio streams + course_ws.rfc6455",
            summary="echo without a WebSocket library: the protocol by hand (chapter 01)",
            chapter="01",
            endpoints=("/echo", "GET /healthz", "GET /metrics"),
            module="course_ws.servers.raw",
        ),
        CatalogueEntry(
            name="echo",
            stack="websockets",
            summary="sends every text or binary message back unchanged",
            chapter="00, 02",
            endpoints=("/echo", "GET /healthz", "GET /metrics"),
            module="course_ws.servers.echo",
        ),
        CatalogueEntry(
            name="chat",
            stack="websockets",
            summary="the chat protocol in rooms, with history, resume, and a browser page",
            chapter="03",
            endpoints=CHAT_ENDPOINTS,
            module="course_ws.servers.chat",
        ),
        CatalogueEntry(
            name="asgi",
            stack="raw ASGI 3 on uvicorn",
            summary="the same chat as a raw ASGI app: the websocket events by hand, no framework",
            chapter="04",
            endpoints=ASGI_CHAT_ENDPOINTS,
            module="course_ws.servers.asgi",
        ),
        CatalogueEntry(
            name="starlette",
            stack="Starlette on uvicorn",
            summary="the same chat on Starlette 1.x: WebSocketRoute, lifespan, denial responses",
            chapter="04",
            endpoints=ASGI_CHAT_ENDPOINTS,
            module="course_ws.servers.starlette",
        ),
        CatalogueEntry(
            name="fastapi",
            stack="FastAPI on uvicorn",
            summary="the same chat on FastAPI: admission is a dependency, refusing before accept",
            chapter="04",
            endpoints=ASGI_CHAT_ENDPOINTS,
            module="course_ws.servers.fastapi",
        ),
        CatalogueEntry(
            name="channels",
            stack="Django Channels on uvicorn",
            summary="the same chat on Django Channels: consumers, groups, messages kept in SQLite",
            chapter="05",
            endpoints=ASGI_CHAT_ENDPOINTS,
            module="course_ws.servers.channels",
        ),
    )
}


def lookup(name: str) -> CatalogueEntry:
    """The catalogue entry called ``name``; :class:`UnknownServerError` lists the known ones."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise UnknownServerError(name) from None
