"""The numbers RFC 6455 puts on the wire, with names a human can read.

Everything here is a constant: magic strings, limits, and the two enums that
give a name to the 4-bit *opcode* of a frame and to the 16-bit *status code* of
a close frame.  Enums derive from :class:`enum.IntEnum` so that they compare
equal to the raw integers read from the wire (``Opcode.TEXT == 1``) while still
printing as names in a notebook.
"""

from __future__ import annotations

import enum

__all__ = [
    "CLOSE_CODE_EXPLANATIONS",
    "GUID",
    "MAX_CLOSE_REASON",
    "MAX_CONTROL_PAYLOAD",
    "WEBSOCKET_VERSION",
    "CloseCode",
    "Opcode",
]

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""Appended to the client's key before hashing (RFC 6455 §1.3).

A fixed string that no non-WebSocket server would ever know: a correct
``Sec-WebSocket-Accept`` proves the server really speaks WebSocket and didn't
just echo the request back (think of a misconfigured cache or proxy).
"""

WEBSOCKET_VERSION = "13"
"""The only protocol version in use since 2011 (``Sec-WebSocket-Version``)."""

MAX_CONTROL_PAYLOAD = 125
"""Control frames must fit the 7-bit length field (RFC 6455 §5.5).

This keeps PING/PONG/CLOSE tiny so they can be interleaved between the
fragments of a long message without waiting behind it.
"""

MAX_CLOSE_REASON = MAX_CONTROL_PAYLOAD - 2
"""A close payload is a 2-byte code followed by the reason: 123 bytes remain."""


class Opcode(enum.IntEnum):
    """The 4-bit opcode at the start of every frame (RFC 6455 §5.2).

    Values 0x3-0x7 and 0xB-0xF are reserved for future data and control
    frames; receiving one is a protocol error since no extension defines them.
    """

    CONT = 0x0  # continues the message started by a TEXT or BINARY frame
    TEXT = 0x1  # first frame of a UTF-8 text message
    BINARY = 0x2  # first frame of a binary message
    CLOSE = 0x8  # starts (or answers) the closing handshake
    PING = 0x9  # "are you there?": the peer must answer with a PONG
    PONG = 0xA  # answer to a PING, echoing its payload; may also be unsolicited

    @property
    def is_control(self) -> bool:
        """Whether this is a control opcode (CLOSE, PING, PONG).

        Control opcodes have the high bit of the nibble set (0x8-0xF).  They
        may arrive between the fragments of a message, so they are never
        fragmented themselves and carry at most 125 bytes.
        """
        return self >= 0x8


class CloseCode(enum.IntEnum):
    """Status codes of close frames (RFC 6455 §7.4 and the IANA registry).

    Codes marked *internal* are for reporting only: they describe what a
    library observed and must never be sent in a close frame.
    """

    NORMAL_CLOSURE = 1000  # the purpose of the connection was fulfilled
    GOING_AWAY = 1001  # server shutting down, or browser tab navigating away
    PROTOCOL_ERROR = 1002  # the peer broke the framing rules
    UNSUPPORTED_DATA = 1003  # e.g. a text-only endpoint received binary
    # 1004 is reserved and has no meaning yet.
    NO_STATUS_RCVD = 1005  # internal: the close frame carried no code
    ABNORMAL_CLOSURE = 1006  # internal: TCP closed without a close frame
    INVALID_DATA = 1007  # e.g. a text message that isn't valid UTF-8
    POLICY_VIOLATION = 1008  # generic "you did something we forbid"
    MESSAGE_TOO_BIG = 1009  # message larger than the endpoint accepts
    MANDATORY_EXTENSION = 1010  # client needed an extension the server refused
    INTERNAL_ERROR = 1011  # unexpected condition, like an HTTP 500
    SERVICE_RESTART = 1012  # server restarting: reconnect later
    TRY_AGAIN_LATER = 1013  # temporary overload: reconnect later
    BAD_GATEWAY = 1014  # a gateway received an invalid upstream response
    TLS_HANDSHAKE = 1015  # internal: the TLS handshake failed


CLOSE_CODE_EXPLANATIONS: dict[int, str] = {
    CloseCode.NORMAL_CLOSURE: "OK",
    CloseCode.GOING_AWAY: "going away",
    CloseCode.PROTOCOL_ERROR: "protocol error",
    CloseCode.UNSUPPORTED_DATA: "unsupported data",
    1004: "reserved",
    CloseCode.NO_STATUS_RCVD: "no status received [internal]",
    CloseCode.ABNORMAL_CLOSURE: "abnormal closure [internal]",
    CloseCode.INVALID_DATA: "invalid frame payload data",
    CloseCode.POLICY_VIOLATION: "policy violation",
    CloseCode.MESSAGE_TOO_BIG: "message too big",
    CloseCode.MANDATORY_EXTENSION: "mandatory extension",
    CloseCode.INTERNAL_ERROR: "internal error",
    CloseCode.SERVICE_RESTART: "service restart",
    CloseCode.TRY_AGAIN_LATER: "try again later",
    CloseCode.BAD_GATEWAY: "bad gateway",
    CloseCode.TLS_HANDSHAKE: "TLS handshake failure [internal]",
}
"""Short human labels for the codes 1000-1015, as shown by ``str(Close(...))``."""
