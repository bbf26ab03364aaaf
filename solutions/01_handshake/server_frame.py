"""Exercise 01 · server_frame — encode a frame the way a server sends it.

A server's frames are never masked, so a frame is a header and the payload as
it is (RFC 6455 §5.2). Build the header:

* byte 0: FIN (0x80) if this frame ends the message, OR the 4-bit opcode;
* byte 1: the MASK bit (0 from a server) and a 7-bit length field:

  - payload of 0 to 125 bytes: the length itself;
  - 126 to 65535 bytes: 126, then the length in the next 2 bytes;
  - 65536 bytes or more: 127, then the length in the next 8 bytes;

  always big-endian ("network byte order"), and always the *shortest* form
  that fits: a 100-byte payload may not use the 16-bit form.

The RFC's example: ``server_frame(0x1, b"Hello")`` is ``81 05 48 65 6c 6c 6f``.

Tip: ``length.to_bytes(2, "big")``, or ``struct.pack("!H", length)`` ("!Q" for 8 bytes).

Check your work with ``course_ws.check("server_frame")`` in a notebook, or
``course-ws check server_frame`` in a terminal.
"""


def server_frame(opcode: int, payload: bytes, *, fin: bool = True) -> bytes:
    """Encode one unmasked frame carrying ``payload``."""
    first_byte = (0x80 if fin else 0x00) | opcode
    length = len(payload)
    if length <= 125:
        header = bytes([first_byte, length])
    elif length <= 0xFFFF:
        header = bytes([first_byte, 126]) + length.to_bytes(2, "big")
    else:
        header = bytes([first_byte, 127]) + length.to_bytes(8, "big")
    return header + payload
