"""Binding the listening socket, with errors that say what to do.

Every server in the course listens on a socket bound here, never inside the
framework: that is how the runner learns the real port when ``port=0`` asks the
kernel for a free one, and how a busy port becomes a one-line message instead
of a traceback from deep inside asyncio or uvicorn.
"""

from __future__ import annotations

import errno
import socket

from course_ws.options import BACKLOG


class BindError(OSError):
    """The address could not be bound; the message says why and what to try."""


def bind_listener(host: str, port: int, *, backlog: int = BACKLOG) -> socket.socket:
    """Bind and listen on ``host:port`` (``port=0``: a free port) and return the socket.

    The socket is non-blocking and ready to hand to ``loop.create_server(sock=...)``,
    ``websockets.asyncio.server.serve(sock=...)`` or ``uvicorn.Server.serve(sockets=[...])``.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=backlog, reuse_port=False)
    except socket.gaierror as exc:
        raise BindError(exc.errno, f"cannot resolve host {host!r}: {exc.strerror}") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise BindError(
                exc.errno, f"port {port} is in use on {host}: pass --port 0 for a free one"
            ) from None
        if exc.errno == errno.EACCES:
            raise BindError(
                exc.errno, f"no permission to listen on port {port}: use a port above 1023"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise BindError(
                exc.errno, f"{host} is not an address of this machine: try 127.0.0.1"
            ) from None
        raise
    # socket.create_server leaves proto at 0, and asyncio turns Nagle's algorithm off
    # (TCP_NODELAY) on accepted connections only when the listener says IPPROTO_TCP.
    # Without it a response written in two pieces (a head, then a body; a 101, then a
    # frame) waits for the peer's delayed ACK: 40 ms on every such exchange.
    sock = socket.socket(sock.family, sock.type, socket.IPPROTO_TCP, fileno=sock.detach())
    sock.setblocking(False)
    return sock


def socket_address(sock: socket.socket) -> tuple[str, int]:
    """The (host, port) a listening socket is bound to."""
    host, port = sock.getsockname()[:2]
    return host, port


def url_host(host: str) -> str:
    """``host`` as it goes into a URL: IPv6 literals in brackets."""
    return f"[{host}]" if ":" in host else host
