"""The payload of a CLOSE frame: an optional status code and reason (§5.5.1).

Layout: nothing at all, or a 2-byte big-endian code followed by a UTF-8
reason.  A single byte is therefore always malformed, and the reason has at
most 123 bytes because control payloads stop at 125.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from .constants import CLOSE_CODE_EXPLANATIONS, MAX_CLOSE_REASON, CloseCode
from .errors import ProtocolError

__all__ = ["Close", "build_close", "explain_close_code", "is_valid_close_code", "parse_close"]

_SENDABLE_CODES = frozenset(CloseCode) - {
    CloseCode.NO_STATUS_RCVD,
    CloseCode.ABNORMAL_CLOSURE,
    CloseCode.TLS_HANDSHAKE,
}


class Close(NamedTuple):
    """Code and reason carried by a close frame.

    A named tuple, so both ``close.code`` and ``code, reason = close`` work.
    ``code`` is None when the frame had an empty payload; APIs like the
    browser's ``CloseEvent`` report that case as 1005 (no status received).
    """

    code: int | None
    reason: str = ""

    def __str__(self) -> str:
        """Render as ``1000 (OK) 'bye'`` for logs and notebooks."""
        if self.code is None:
            return "(no status code)"
        text = f"{self.code} ({explain_close_code(self.code)})"
        return f"{text} {self.reason!r}" if self.reason else text


def explain_close_code(code: int) -> str:
    """Return a short human label for any close code, known or not.

    Beyond the codes defined by the RFC and IANA, two ranges are open to
    everyone: 3000-3999 is registered with IANA by libraries and frameworks,
    4000-4999 is for private use by applications (like HTTP's 4xx, but yours).
    """
    if code in CLOSE_CODE_EXPLANATIONS:
        return CLOSE_CODE_EXPLANATIONS[code]
    if 3000 <= code < 4000:
        return "registered"
    if 4000 <= code < 5000:
        return "private use"
    return "unknown"


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame on the wire (§7.4).

    Refused: below 1000 (unused), 1004 (reserved), 1005/1006/1015 (internal
    codes that describe *the absence* of a code, a lost connection or a TLS
    failure: the peer cannot send them), unassigned 1016-2999, and 5000+.
    """
    return code in _SENDABLE_CODES or 3000 <= code < 5000


def build_close(code: int | None, reason: str = "") -> bytes:
    """Build the payload of a close frame; ``None`` means "no status code".

    Raises ValueError rather than ProtocolError: a bad code or a long reason
    here is a bug in *our* program, not something the peer did.
    """
    if code is None:
        if reason:
            raise ValueError("a close reason requires a close code")
        return b""
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent in a close frame")
    encoded = reason.encode()
    if len(encoded) > MAX_CLOSE_REASON:
        raise ValueError(
            f"close reason is {len(encoded)} bytes of UTF-8, at most {MAX_CLOSE_REASON} fit"
        )
    return struct.pack("!H", code) + encoded


def parse_close(payload: bytes) -> Close:
    """Parse and validate the payload of a received close frame.

    Known codes come back as :class:`CloseCode` members so they print by
    name.  Raises ProtocolError with 1002 for a 1-byte payload or a code
    that is not allowed on the wire, and 1007 for a reason that isn't UTF-8.
    """
    if not payload:
        return Close(None, "")
    if len(payload) == 1:
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, "close payload of 1 byte")
    (code,) = struct.unpack("!H", payload[:2])
    if not is_valid_close_code(code):
        raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError as exc:
        raise ProtocolError(CloseCode.INVALID_DATA, "close reason is not valid UTF-8") from exc
    return Close(CloseCode(code) if code in _SENDABLE_CODES else code, reason)
