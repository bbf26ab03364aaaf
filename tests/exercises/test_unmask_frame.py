"""Checks for exercise ``unmask_frame`` (exercises/01_handshake/unmask_frame.py).

The frames are built by ``course_ws.rfc6455.encode_frame``, whose output the
course's tests compare with the websockets library's.
"""

from __future__ import annotations

import pytest

from course_ws.rfc6455 import Opcode, encode_frame

KEY = bytes.fromhex("37fa213d")
RFC_HELLO = bytes.fromhex("818537fa213d7f9f4d5158")


def payload_of(size: int) -> bytes:
    return bytes(n % 251 for n in range(size))


def show(field: str, value: object) -> str:
    """Keys as hex, long payloads by their start and size: a failure stays one line."""
    if not isinstance(value, bytes):
        return repr(value)
    if field == "mask":
        return value.hex(" ") if value else "nothing"
    return repr(value) if len(value) <= 12 else f"{value[:8]!r}... ({len(value)} bytes)"


def decode(load, data: bytes, what: str) -> object:
    try:
        return load("unmask_frame").unmask_frame(data)
    except NotImplementedError as exc:
        pytest.fail(f"for {what}: expected a frame, got NotImplementedError ({exc})")


def check(load, what: str, data: bytes, **expected: object) -> None:
    frame = decode(load, data, what)
    for field, value in expected.items():
        got = getattr(frame, field)
        assert got == value, (
            f"for {what}: expected {field} {show(field, value)}, got {show(field, got)}"
        )


def test_rfc_hello(load):
    """The masked "Hello" of RFC 6455 §5.7"""
    check(
        load,
        "the RFC's masked 'Hello'",
        RFC_HELLO,
        fin=True,
        opcode=1,
        length=5,
        mask=KEY,
        payload=b"Hello",
    )


def test_fin_and_opcode(load):
    """FIN and opcode: a first fragment, a continuation, a ping, a close"""
    cases = [
        (Opcode.TEXT, False, "a first fragment (TEXT, FIN=0)"),
        (Opcode.CONT, True, "a last fragment (CONT, FIN=1)"),
        (Opcode.BINARY, True, "a BINARY frame"),
        (Opcode.PING, True, "a PING"),
        (Opcode.CLOSE, True, "a CLOSE"),
    ]
    for opcode, fin, what in cases:
        data = encode_frame(opcode, b"abc", fin=fin, mask=KEY)
        check(load, what, data, fin=fin, opcode=int(opcode))


def check_sizes(load, sizes: tuple[int, ...], encoding: str) -> None:
    for size in sizes:
        data = encode_frame(Opcode.BINARY, payload_of(size), mask=KEY)
        what = f"a {size}-byte payload ({encoding} length)"
        check(load, what, data, length=size, mask=KEY, payload=payload_of(size))


def test_7_bit_lengths(load):
    """Lengths 0 to 125 fit in the 7 bits of byte 1"""
    check_sizes(load, (0, 1, 125), "7-bit")


def test_16_bit_lengths(load):
    """Lengths 126 to 65535: 126, then a 16-bit length"""
    check_sizes(load, (126, 1000, 65535), "16-bit")


def test_64_bit_lengths(load):
    """Lengths from 65536: 127, then a 64-bit length"""
    check_sizes(load, (65536, 100_000), "64-bit")


def test_unmasked_frame_is_refused(load):
    """An unmasked frame is refused with ValueError (§5.1)"""
    data = encode_frame(Opcode.TEXT, b"Hello")  # no mask: what a server sends, never a client
    try:
        frame = decode(load, data, "an unmasked frame")
    except ValueError:
        return
    pytest.fail(f"for an unmasked frame: expected ValueError, got {frame!r}")


def test_next_frame_is_left_alone(load):
    """Only the first frame is decoded when two arrive glued together"""
    data = encode_frame(Opcode.TEXT, b"first", mask=KEY) + encode_frame(
        Opcode.TEXT, b"second", mask=KEY
    )
    check(load, "two frames glued together", data, length=5, payload=b"first")
