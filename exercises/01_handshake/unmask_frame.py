"""Exercise 01 · unmask_frame — read one frame a client sent, byte by byte.

Every frame from a client is masked. Decode one from ``data`` (RFC 6455 §5.2):

* byte 0: FIN is the top bit (0x80), the opcode the low 4 bits (0x0F);
* byte 1: MASK is the top bit, and must be 1 from a client — raise ValueError
  if it isn't (§5.1: a server must refuse unmasked frames); the low 7 bits are
  the payload length, *unless* they say 126 (the real length follows in the
  next 2 bytes) or 127 (in the next 8 bytes), big-endian;
* then the 4-byte masking key;
* then the payload, masked: payload byte ``i`` was XORed with ``key[i % 4]``,
  and XOR undoes itself.

Return a :class:`DecodedFrame`. Bytes after the end of this frame (the start of
the next one) are not yours to read.

Tip: ``int.from_bytes(data[2:4], "big")`` reads a 16-bit length. The RFC's
example, the masked text "Hello": ``81 85 37 fa 21 3d 7f 9f 4d 51 58``.

Check your work with ``course_ws.check("unmask_frame")`` in a notebook, or
``course-ws check unmask_frame`` in a terminal.
"""

from typing import NamedTuple


class DecodedFrame(NamedTuple):
    """What a frame says, with its payload unmasked."""

    fin: bool
    opcode: int
    length: int
    mask: bytes
    payload: bytes


def unmask_frame(data: bytes) -> DecodedFrame:
    """Decode the masked client frame at the start of ``data``."""
    fin = bool(data[0] & 0x80)
    opcode = data[0] & 0x0F
    masked = bool(data[1] & 0x80)  # noqa: F841  (TODO 1 needs it)
    length = data[1] & 0x7F
    offset = 2  # where the next field starts

    # TODO 1: refuse a frame whose MASK bit is 0 with ValueError.
    # TODO 2: 126 means "the length is in the next 2 bytes", 127 "in the next 8";
    #         read it and move `offset` past those bytes.
    # TODO 3: read the 4-byte masking key at `offset`, and move past it.
    mask = b""
    # TODO 4: unmask: payload byte i XOR mask[i % 4].
    payload = data[offset : offset + length]
    return DecodedFrame(fin, opcode, length, mask, payload)
