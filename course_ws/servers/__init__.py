"""The example servers of the course: one public module per catalogue entry.

Each public module exposes ``start(options, sock) -> StartedServer``; the
catalogue (:mod:`course_ws.hosting.catalogue`) names them, and the runner and
the CLI start them. Private modules (``_websockets_router``, ``_asgi_host``)
are plumbing shared by several entries. A server only moves events between its
stack and the chat (:mod:`course_ws.chat`) and fan-out (:mod:`course_ws.fanout.strategies`)
layers: policy lives there, once.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Protocol

from course_ws.options import ServeOptions


class StartedServer(Protocol):
    """A server that listens on a socket until :meth:`aclose` is awaited."""

    async def aclose(self) -> None:
        """Stop accepting, close every client with 1001 (going away), and return when done."""
        ...


StartServer = Callable[[ServeOptions, socket.socket], Awaitable[StartedServer]]
"""Start a server on an already bound, listening socket, in the running event loop."""
