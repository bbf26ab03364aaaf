"""uvicorn's HTTP/1.1 protocol with the request head bounded, for the course's ASGI host.

uvicorn 0.54 parses requests with ``httptools`` when it is installed (it is, in
``uvicorn[standard]``), and that parser sets no limit on the request line or
the headers: ``on_url`` appends to ``self.url`` and the parser itself grows a
header's value for as long as the client keeps sending it
(``uvicorn/protocols/http/httptools_impl.py``, ``on_url`` and ``on_header``).
Measured against ``course-ws serve asgi`` before this module: one connection
sending a 200 MiB header took the server from 41 MiB to 286 MiB resident.
WebSocket handshakes go through the same parser first (uvicorn hands the
request to its WebSocket protocol only once the head is complete).

:class:`BoundedHttpTools` counts the bytes of a request head as they arrive
and, once more than :data:`MAX_REQUEST_HEAD` have come without the head being
complete, answers ``431 Request Header Fields Too Large`` and closes the
connection. The count is taken after each read, so a head that arrives whole
in one read (asyncio reads up to 256 KiB at a time) passes: what a client can
make the server hold stays under 64 KiB plus one read. Bodies are not counted here: the apps read
them bounded (:func:`course_ws.servers._asgi_chat.read_body`). Without
``httptools`` uvicorn falls back to ``h11``, whose own limit (16 KiB) applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

MAX_REQUEST_HEAD = 64 * 1024
"""Bytes a request line and its headers may take: nginx's default buffers hold 32 KiB,
browsers with many cookies send 10-20 KiB, and no course endpoint needs more."""

_TOO_LARGE_TEXT = f"the request head is over {MAX_REQUEST_HEAD} bytes\n".encode()
HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_TOO_LARGE_TEXT), _TOO_LARGE_TEXT)
)


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's ``httptools`` protocol that refuses a request head over :data:`MAX_REQUEST_HEAD`.

    ``refused`` (a class attribute, set per server by :func:`bounded_http`) is
    told each status the protocol answers on its own, for the server's metrics.
    """

    refused: Callable[[int], None] = staticmethod(lambda status: None)
    _head_bytes = 0
    _in_body = False

    def data_received(self, data: bytes) -> None:
        if not self._in_body:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_body or self._head_bytes <= MAX_REQUEST_HEAD:
            return
        transport = self.transport
        if isinstance(transport, asyncio.Transport) and not transport.is_closing():
            self.refused(431)
            transport.write(HEAD_TOO_LARGE)
            transport.close()

    def on_headers_complete(self) -> None:
        self._in_body = True
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._in_body = False
        self._head_bytes = 0
        super().on_message_complete()


def bounded_http(refused: Callable[[int], None]) -> type[BoundedHttpTools]:
    """A :class:`BoundedHttpTools` class of its own for one server, counting into ``refused``."""
    return type("BoundedHttpTools", (BoundedHttpTools,), {"refused": staticmethod(refused)})
