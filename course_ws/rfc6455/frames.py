"""Frames: the unit of the WebSocket wire format (RFC 6455 §5.2).

::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-------+-+-------------+-------------------------------+
    |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
    |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
    |N|V|V|V|       |S|             |   (if payload len==126/127)   |
    | |1|2|3|       |K|             |                               |
    +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
    |     Extended payload length continued, if payload len == 127  |
    + - - - - - - - - - - - - - - - +-------------------------------+
    |                               |Masking-key, if MASK set to 1  |
    +-------------------------------+-------------------------------+
    | Masking-key (continued)       |          Payload Data         |
    +-------------------------------- - - - - - - - - - - - - - - - +
    :                     Payload Data continued ...                :
    +---------------------------------------------------------------+

The length takes 7 bits when it is at most 125; the values 126 and 127 mean
"the real length follows in 16 bits" or "in 64 bits".  Small frames — most
chat messages — thus cost only 2 bytes of header from a server, 6 from a
client (which adds a 4-byte masking key, see :mod:`.masking`).

Division of labour: :class:`FrameDecoder` enforces every rule that can be
checked by looking at *one frame header* (masking, reserved bits, opcodes,
control frame limits, length encoding, ``max_size`` per frame).  Rules about
*sequences* of frames live in :mod:`.assembler`, rules about close payloads
in :mod:`.close`.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Literal

from .close import parse_close
from .constants import MAX_CONTROL_PAYLOAD, CloseCode, Opcode
from .errors import ProtocolError
from .masking import mask_bytes

__all__ = ["Frame", "FrameDecoder", "Role", "encode_frame"]

Role = Literal["server", "client"]
"""Who *we* are. A server receives masked frames, a client unmasked ones."""

_DISPLAY_WIDTH = 75


@dataclass(frozen=True)
class Frame:
    """One decoded frame: the header bits that matter and the unmasked payload.

    The MASK bit, the masking key and the length encoding are not kept: they
    are details of one transmission, not properties of the frame.  The
    ``rsv`` bits are kept because extensions (permessage-deflate uses RSV1)
    give them meaning, and so that a bad frame can be displayed faithfully.
    """

    opcode: Opcode
    payload: bytes
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False

    def serialize(self, *, mask: bytes | None = None) -> bytes:
        """Encode this frame for the wire; see :func:`encode_frame`."""
        return encode_frame(
            self.opcode,
            self.payload,
            fin=self.fin,
            mask=mask,
            rsv1=self.rsv1,
            rsv2=self.rsv2,
            rsv3=self.rsv3,
        )

    def __str__(self) -> str:
        """Describe the frame in one line, e.g. ``TEXT 'hello' [5 bytes]``.

        Made for logs and notebooks: long payloads keep their start and end
        around a ``...`` so that the line stays short, and the payload is
        shown as text or as hex depending on what it looks like.
        """
        size = len(self.payload)
        details = [f"{size} byte{'' if size == 1 else 's'}"]
        if not self.fin:
            details.append("continued")
        rsv_bits = {"rsv1": self.rsv1, "rsv2": self.rsv2, "rsv3": self.rsv3}
        details += [name for name, bit in rsv_bits.items() if bit]
        return f"{self.opcode.name} {self._payload_repr()} [{', '.join(details)}]"

    def _payload_repr(self) -> str:
        """Show the payload as text when it is text, as hex otherwise.

        TEXT frames are always shown as text: a fragment may end in the
        middle of a character, and the broken bytes then appear as U+FFFD.
        CONT, PING and PONG frames are shown as text only when they decode
        to printable characters, because 4 random bytes (a typical ping
        payload) often happen to be valid UTF-8 garbage.
        """
        if self.opcode is Opcode.CLOSE:
            try:
                return _elide(str(parse_close(self.payload)))
            except ProtocolError:
                return _show_hex(self.payload)
        if not self.payload:
            return "''"
        if self.opcode is Opcode.BINARY:
            return _show_hex(self.payload)
        try:
            text = self.payload.decode()
        except UnicodeDecodeError:
            if self.opcode is Opcode.TEXT:
                return _show_text(self.payload.decode(errors="replace"))
            return _show_hex(self.payload)
        if self.opcode is Opcode.TEXT or text.isprintable():
            return _show_text(text)
        return _show_hex(self.payload)


def encode_frame(
    opcode: Opcode | int,
    payload: bytes,
    *,
    fin: bool = True,
    mask: bytes | None = None,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
) -> bytes:
    """Encode one frame; ``mask`` is the 4-byte key a client must provide.

    The length uses the shortest encoding, as §5.2 requires: 7 bits up to
    125, 16 bits up to 65535, 64 bits beyond.

    The encoder is deliberately permissive: it will build a fragmented PING,
    a 200-byte PONG, set RSV bits or use a reserved opcode (pass an int), so
    that you can watch how a real peer reacts to broken frames.  It only
    refuses what cannot be represented at all.
    """
    if not 0 <= opcode <= 0xF:
        raise ValueError(f"opcode must fit in 4 bits, got {opcode}")
    first_byte = (
        (0x80 if fin else 0)
        | (0x40 if rsv1 else 0)
        | (0x20 if rsv2 else 0)
        | (0x10 if rsv3 else 0)
        | opcode
    )
    mask_bit = 0x80 if mask is not None else 0
    length = len(payload)
    if length <= 125:
        header = struct.pack("!BB", first_byte, mask_bit | length)
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", first_byte, mask_bit | 126, length)
    else:
        header = struct.pack("!BBQ", first_byte, mask_bit | 127, length)
    if mask is None:
        return header + payload
    return header + mask + mask_bytes(payload, mask)


class FrameDecoder:
    """Turn bytes received in arbitrary pieces into :class:`Frame` objects.

    TCP has no notion of frames: one ``recv()`` may return half a header, or
    three frames and the start of a fourth.  :meth:`feed` buffers whatever
    is incomplete and returns every frame that is complete, unmasked.

    ``role`` is who *we* are: ``"server"`` requires every incoming frame to
    be masked, ``"client"`` requires none to be.  ``max_size`` caps the
    payload of a single frame (None: no cap); the check happens as soon as
    the header is readable, before a single payload byte is buffered, so a
    peer announcing a 1 TiB frame costs us 10 bytes, not 1 TiB.

    Each violation raises :class:`ProtocolError` with the close code to send.
    The offending header then stays at the front of the buffer, so the
    decoder is dead: every later :meth:`feed` raises the same error.  Frames
    that preceded the bad one in the same :meth:`feed` are not returned —
    once the peer breaks the protocol, the connection is failed (§7.1.7).
    """

    def __init__(self, *, role: Role, max_size: int | None = 2**20) -> None:
        if role not in ("server", "client"):
            raise ValueError(f"role must be 'server' or 'client', got {role!r}")
        self.role = role
        self.max_size = max_size
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """How many received bytes are waiting to complete a frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes and return the frames they complete (maybe none).

        Consumed bytes are deleted from the front of a ``bytearray``, which
        CPython does without copying the rest, and an incomplete frame is
        only re-examined from its header: feeding a large frame in tiny
        pieces costs time proportional to its size, not to its size squared.
        """
        self._buffer += data
        frames = []
        while (frame := self._next_frame()) is not None:
            frames.append(frame)
        return frames

    def _next_frame(self) -> Frame | None:
        """Decode the frame at the front of the buffer, if it is complete."""
        buffer = self._buffer
        if len(buffer) < 2:
            return None
        first_byte, second_byte = buffer[0], buffer[1]
        fin = bool(first_byte & 0x80)
        if first_byte & 0x70:
            # RSV bits only mean something once an extension defines them.
            bits = [f"RSV{n}" for n, bit in ((1, 0x40), (2, 0x20), (3, 0x10)) if first_byte & bit]
            raise ProtocolError(
                CloseCode.PROTOCOL_ERROR, f"{'+'.join(bits)} set but no extension was negotiated"
            )
        try:
            opcode = Opcode(first_byte & 0x0F)
        except ValueError:
            raise ProtocolError(
                CloseCode.PROTOCOL_ERROR, f"reserved opcode 0x{first_byte & 0x0F:X}"
            ) from None

        masked = bool(second_byte & 0x80)
        if self.role == "server" and not masked:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "frame from client is not masked")
        if self.role == "client" and masked:
            raise ProtocolError(CloseCode.PROTOCOL_ERROR, "frame from server is masked")

        length = second_byte & 0x7F
        if opcode.is_control:
            if not fin:
                raise ProtocolError(CloseCode.PROTOCOL_ERROR, f"fragmented {opcode.name} frame")
            if length > MAX_CONTROL_PAYLOAD:  # 126 or 127: an extended length
                raise ProtocolError(
                    CloseCode.PROTOCOL_ERROR,
                    f"{opcode.name} payload over {MAX_CONTROL_PAYLOAD} bytes",
                )

        offset = 2
        if length == 126:
            if len(buffer) < 4:
                return None
            (length,) = struct.unpack_from("!H", buffer, 2)
            offset = 4
            if length <= 125:
                raise ProtocolError(
                    CloseCode.PROTOCOL_ERROR, f"length {length} not minimally encoded"
                )
        elif length == 127:
            if len(buffer) < 10:
                return None
            (length,) = struct.unpack_from("!Q", buffer, 2)
            offset = 10
            if length >> 63:
                raise ProtocolError(
                    CloseCode.PROTOCOL_ERROR, "most significant bit of 64-bit length is set"
                )
            if length <= 0xFFFF:
                raise ProtocolError(
                    CloseCode.PROTOCOL_ERROR, f"length {length} not minimally encoded"
                )

        if self.max_size is not None and length > self.max_size:
            raise ProtocolError(
                CloseCode.MESSAGE_TOO_BIG,
                f"frame of {length} bytes exceeds max_size of {self.max_size} bytes",
            )

        key_end = offset + 4 if masked else offset
        end = key_end + length
        if len(buffer) < end:
            return None
        payload = bytes(buffer[key_end:end])
        if masked:
            payload = mask_bytes(payload, bytes(buffer[offset:key_end]))
        del buffer[:end]
        return Frame(opcode, payload, fin)


def _elide(text: str) -> str:
    """Keep the start and the end of ``text``, at most 75 characters."""
    if len(text) <= _DISPLAY_WIDTH:
        return text
    cut = _DISPLAY_WIDTH // 3 - 1
    return f"{text[: 2 * cut]}...{text[-cut:]}"


def _show_text(text: str) -> str:
    """``repr()`` of the text, elided. Only the ends survive, so only they are repr'd."""
    if len(text) > 2 * _DISPLAY_WIDTH:
        text = text[:_DISPLAY_WIDTH] + text[-_DISPLAY_WIDTH:]
    return _elide(repr(text))


def _show_hex(data: bytes) -> str:
    """Bytes as ``00 ff 10``, elided. Each byte takes 3 characters."""
    edge = _DISPLAY_WIDTH // 3
    if len(data) > 2 * edge:
        data = data[:edge] + data[-edge:]
    return _elide(data.hex(" "))
