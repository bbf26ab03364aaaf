"""Checks for exercise ``server_frame`` (exercises/01_handshake/server_frame.py).

The expected bytes come from the websockets library's own encoder, and every
frame is also read back by ``course_ws.rfc6455.FrameDecoder``, which refuses
any length that is not in its shortest form.
"""

from __future__ import annotations

import pytest
from websockets.frames import Frame as WebsocketsFrame
from websockets.frames import Opcode as WebsocketsOpcode

from course_ws.rfc6455 import FrameDecoder, ProtocolError


def reference(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    frame = WebsocketsFrame(WebsocketsOpcode(opcode), payload, fin=fin)
    return frame.serialize(mask=False)


def header_of(data: bytes, size: int) -> str:
    """The bytes before the payload, in hex."""
    return data[: len(data) - size].hex(" ") if len(data) >= size else data.hex(" ")


def encode(load, opcode: int, payload: bytes, what: str, fin: bool = True) -> bytes:
    try:
        return load("server_frame").server_frame(opcode, payload, fin=fin)
    except NotImplementedError as exc:
        expected = header_of(reference(opcode, payload, fin), len(payload))
        pytest.fail(f"for {what}: expected header {expected}, got NotImplementedError ({exc})")


def check_sizes(load, sizes: tuple[int, ...], encoding: str) -> None:
    for size in sizes:
        payload = bytes(n % 251 for n in range(size))
        what = f"a {size}-byte payload ({encoding} length)"
        got = encode(load, 0x2, payload, what)
        expected = reference(0x2, payload)
        assert got == expected, (
            f"for {what}: expected header {header_of(expected, size)}, "
            f"got {header_of(got, size)}"
            + (f" and {len(got)} bytes in all" if len(got) != len(expected) else "")
        )
        try:
            (frame,) = FrameDecoder(role="client", max_size=None).feed(got)
        except (ProtocolError, ValueError) as exc:
            pytest.fail(f"for {what}: expected a valid frame, got {exc}")
        assert frame.payload == payload, f"for {what}: expected the payload back, got another"


def test_rfc_hello(load):
    """The unmasked "Hello" of RFC 6455 §5.7"""
    got = encode(load, 0x1, b"Hello", "the RFC's 'Hello'")
    assert got == bytes.fromhex("810548656c6c6f"), (
        f"for the RFC's 'Hello': expected 81 05 48 65 6c 6c 6f, got {got.hex(' ')}"
    )


def test_fin_and_opcode(load):
    """FIN and opcode: a first fragment, a continuation, a ping, a close"""
    for opcode, fin, what in [
        (0x1, False, "a first fragment (TEXT, FIN=0)"),
        (0x0, True, "a last fragment (CONT, FIN=1)"),
        (0x9, True, "a PING"),
        (0x8, True, "a CLOSE"),
    ]:
        got = encode(load, opcode, b"abc", what, fin=fin)
        expected = reference(opcode, b"abc", fin)
        assert got == expected, f"for {what}: expected {expected.hex(' ')}, got {got.hex(' ')}"


def test_7_bit_lengths(load):
    """Lengths 0 to 125 fit in the 7 bits of byte 1"""
    check_sizes(load, (0, 1, 125), "7-bit")


def test_16_bit_lengths(load):
    """Lengths 126 to 65535: 126, then a 16-bit length"""
    check_sizes(load, (126, 1000, 65535), "16-bit")


def test_64_bit_lengths(load):
    """Lengths from 65536: 127, then a 64-bit length"""
    check_sizes(load, (65536, 100_000), "64-bit")
