"""What a started server looks like to the runner and the CLI, whatever its stack."""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Protocol

from course_ws.options import ServeOptions


class RunningServer(Protocol):
    """A server that listens on a socket until :meth:`aclose` is awaited."""

    async def aclose(self) -> None:
        """Stop accepting, close every client with 1001 (going away), and return when done."""
        ...


StartServer = Callable[[ServeOptions, socket.socket], Awaitable[RunningServer]]
"""Start a server on an already bound, listening socket, in the running event loop."""
