"""The two ways a WebSocket conversation goes wrong.

* Before the connection exists, the HTTP handshake can be refused: that's a
  :class:`HandshakeError`, which maps to an HTTP status code.
* Once frames flow, the peer can break the framing rules: that's a
  :class:`ProtocolError`, which maps to the close code you must send back
  before dropping the connection ("fail the WebSocket connection", §7.1.7).

Both carry exactly what the caller needs to answer the peer, so an I/O layer
never has to invent a status or a code itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus

from .constants import CloseCode

__all__ = ["HandshakeError", "ProtocolError"]


class HandshakeError(Exception):
    """The opening handshake failed.

    Attributes:
        status: On the server side, the HTTP status to answer with
            (400, 426...). On the client side, the status the server sent.
        reason: What is wrong, naming the offending header; short enough to
            be the body of an error response.
        headers: Extra response headers the server must send with the error,
            e.g. ``Sec-WebSocket-Version: 13`` with a 426 so that the client
            learns which version we speak (RFC 6455 §4.2.2).
    """

    def __init__(
        self,
        status: int,
        reason: str,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = tuple(headers)
        super().__init__(f"{status} {reason_phrase(status)}: {reason}")


class ProtocolError(Exception):
    """The peer sent something RFC 6455 forbids.

    Attributes:
        code: The close code to send before closing the TCP connection:
            1002 for broken framing, 1007 for invalid UTF-8, 1009 for
            oversized messages.
        reason: A short explanation, at most 123 bytes of UTF-8 so that it
            fits in the reason of a close frame.
    """

    def __init__(self, code: CloseCode, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code.value} {code.name}: {reason}")


def reason_phrase(status: int) -> str:
    """Return the standard phrase for an HTTP status, e.g. "Bad Request".

    Unknown statuses get an empty phrase rather than an exception: servers do
    send non-standard codes, and an error message must never fail to build.
    """
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
