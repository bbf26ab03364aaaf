"""RFC 6455, the WebSocket protocol, written by hand to be read in one sitting.

This package is *sans-I/O*: it never touches a socket or an event loop.
Every function takes bytes and returns values, or takes values and returns
bytes.  The same code can then serve a blocking client
(:mod:`course_ws.clients.raw`), an asyncio server, or a test that feeds it one
byte at a time — and it can be tested without a network.

Reading order, one idea per module:

1. :mod:`.constants` — opcodes, close codes, limits.
2. :mod:`.errors` — HandshakeError (HTTP status) and ProtocolError (close code).
3. :mod:`.handshake` — the HTTP/1.1 Upgrade that opens a connection.
4. :mod:`.masking` — why and how clients XOR their frames.
5. :mod:`.close` — the payload of a close frame.
6. :mod:`.frames` — the frame format, encoder and incremental decoder.
7. :mod:`.assembler` — fragmented frames back into text or binary messages.
"""

from .assembler import MAX_FRAGMENTS, MessageAssembler
from .close import Close, build_close, explain_close_code, is_valid_close_code, parse_close
from .constants import (
    CLOSE_CODE_EXPLANATIONS,
    GUID,
    MAX_CLOSE_REASON,
    MAX_CONTROL_PAYLOAD,
    WEBSOCKET_VERSION,
    CloseCode,
    Opcode,
)
from .errors import HandshakeError, ProtocolError
from .frames import Frame, FrameDecoder, Role, encode_frame
from .handshake import (
    MAX_HEAD_SIZE,
    HttpHeadReader,
    Request,
    Response,
    accept_key,
    build_error_response,
    build_request,
    build_response,
    check_host,
    check_response,
    check_version,
    generate_key,
    parse_request,
    parse_response,
    split_target,
    validate_request,
)
from .masking import generate_mask, mask_bytes, mask_bytes_naive

__all__ = [
    "CLOSE_CODE_EXPLANATIONS",
    "GUID",
    "MAX_CLOSE_REASON",
    "MAX_CONTROL_PAYLOAD",
    "MAX_FRAGMENTS",
    "MAX_HEAD_SIZE",
    "WEBSOCKET_VERSION",
    "Close",
    "CloseCode",
    "Frame",
    "FrameDecoder",
    "HandshakeError",
    "HttpHeadReader",
    "MessageAssembler",
    "Opcode",
    "ProtocolError",
    "Request",
    "Response",
    "Role",
    "accept_key",
    "build_close",
    "build_error_response",
    "build_request",
    "build_response",
    "check_host",
    "check_response",
    "check_version",
    "encode_frame",
    "explain_close_code",
    "generate_key",
    "generate_mask",
    "is_valid_close_code",
    "mask_bytes",
    "mask_bytes_naive",
    "parse_close",
    "parse_request",
    "parse_response",
    "split_target",
    "validate_request",
]
