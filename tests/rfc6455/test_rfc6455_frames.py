"""Frame encoding and decoding: RFC examples, round trips, and every framing rule."""

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_ws.rfc6455 import (
    CloseCode,
    Frame,
    FrameDecoder,
    MessageAssembler,
    Opcode,
    ProtocolError,
    build_close,
    encode_frame,
)

RFC_MASK = bytes.fromhex("37fa213d")
BOUNDARY_LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 65537]
DATA_OPCODES = [Opcode.CONT, Opcode.TEXT, Opcode.BINARY]
CONTROL_OPCODES = [Opcode.CLOSE, Opcode.PING, Opcode.PONG]


def feed_in_pieces(decoder: FrameDecoder, data: bytes, cuts: list[int]) -> list[Frame]:
    """Feed ``data`` split at the given offsets; return all frames decoded."""
    bounds = [0, *sorted(cuts), len(data)]
    frames = []
    for start, end in itertools.pairwise(bounds):
        frames += decoder.feed(data[start:end])
    return frames


def decode_error(role: str, data: bytes, max_size: int | None = 2**20) -> ProtocolError:
    decoder = FrameDecoder(role=role, max_size=max_size)  # type: ignore[arg-type]
    with pytest.raises(ProtocolError) as info:
        decoder.feed(data)
    return info.value


# -- RFC 6455 §5.7 examples ------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "mask", "frame"),
    [
        pytest.param("81 05 48 65 6c 6c 6f", None, Frame(Opcode.TEXT, b"Hello"), id="text"),
        pytest.param(
            "81 85 37 fa 21 3d 7f 9f 4d 51 58",
            RFC_MASK,
            Frame(Opcode.TEXT, b"Hello"),
            id="masked-text",
        ),
        pytest.param(
            "01 03 48 65 6c", None, Frame(Opcode.TEXT, b"Hel", fin=False), id="first-fragment"
        ),
        pytest.param("80 02 6c 6f", None, Frame(Opcode.CONT, b"lo"), id="last-fragment"),
        pytest.param("89 05 48 65 6c 6c 6f", None, Frame(Opcode.PING, b"Hello"), id="ping"),
        pytest.param(
            "8a 85 37 fa 21 3d 7f 9f 4d 51 58",
            RFC_MASK,
            Frame(Opcode.PONG, b"Hello"),
            id="masked-pong",
        ),
    ],
)
def test_rfc_examples(wire: str, mask: bytes | None, frame: Frame) -> None:
    data = bytes.fromhex(wire)
    assert frame.serialize(mask=mask) == data
    role = "client" if mask is None else "server"
    assert FrameDecoder(role=role).feed(data) == [frame]


def test_rfc_example_fragmented_hello() -> None:
    decoder = FrameDecoder(role="client")
    assembler = MessageAssembler()
    frames = decoder.feed(bytes.fromhex("01 03 48 65 6c 80 02 6c 6f"))
    assert [assembler.feed(frame) for frame in frames] == [None, "Hello"]


@pytest.mark.parametrize(
    ("length", "header"),
    [(256, "82 7e 01 00"), (65536, "82 7f 00 00 00 00 00 01 00 00")],
    ids=["256-bytes-16-bit-length", "64KiB-64-bit-length"],
)
def test_rfc_examples_extended_lengths(length: int, header: str) -> None:
    payload = bytes(range(256)) * (length // 256)
    data = bytes.fromhex(header) + payload
    assert encode_frame(Opcode.BINARY, payload) == data
    assert FrameDecoder(role="client", max_size=None).feed(data) == [Frame(Opcode.BINARY, payload)]


# -- Encoding --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "header_size"),
    [(0, 2), (1, 2), (125, 2), (126, 4), (127, 4), (65535, 4), (65536, 10), (65537, 10)],
)
@pytest.mark.parametrize("mask", [None, RFC_MASK])
def test_length_uses_the_shortest_encoding(
    length: int, header_size: int, mask: bytes | None
) -> None:
    data = encode_frame(Opcode.BINARY, b"x" * length, mask=mask)
    key_size = 0 if mask is None else 4
    assert len(data) == header_size + key_size + length


def test_header_bits() -> None:
    data = encode_frame(Opcode.TEXT, b"", fin=False, rsv1=True, rsv3=True, mask=RFC_MASK)
    assert data == bytes([0b0101_0001, 0b1000_0000]) + RFC_MASK


def test_encoder_is_permissive_so_peers_can_be_tested() -> None:
    # A reserved opcode and an oversized, fragmented ping: valid to build, invalid to send.
    assert encode_frame(3, b"")[0] == 0x83
    assert encode_frame(Opcode.PING, b"x" * 200, fin=False)[:2] == bytes([0x09, 0x7E])


@pytest.mark.parametrize("opcode", [-1, 16])
def test_opcode_must_fit_in_four_bits(opcode: int) -> None:
    with pytest.raises(ValueError, match="4 bits"):
        encode_frame(opcode, b"")


def test_serialize_and_encode_frame_agree() -> None:
    frame = Frame(Opcode.BINARY, b"\x00\x01", fin=False, rsv2=True)
    assert frame.serialize(mask=RFC_MASK) == encode_frame(
        Opcode.BINARY, b"\x00\x01", fin=False, rsv2=True, mask=RFC_MASK
    )


# -- Round trips at any split point ----------------------------------------------


def check_round_trip(
    length: int, opcode: Opcode, fin: bool, masked: bool, seed: int, data: st.DataObject
) -> None:
    """Encode a frame, feed it split where hypothesis likes, expect it back."""
    # Random bytes from a seed: drawing 64 KiB byte by byte from hypothesis is slow.
    rng = random.Random(seed)
    payload = rng.randbytes(length)
    mask = rng.randbytes(4) if masked else None
    wire = encode_frame(opcode, payload, fin=fin, mask=mask)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12), label="cuts")
    decoder = FrameDecoder(role="server" if masked else "client", max_size=None)
    assert feed_in_pieces(decoder, wire, cuts) == [Frame(opcode, payload, fin)]
    assert decoder.buffered == 0


round_trip_arguments = {
    "opcode": st.sampled_from(DATA_OPCODES),
    "fin": st.booleans(),
    "masked": st.booleans(),
    "seed": st.integers(0, 2**32),
    "data": st.data(),
}


@pytest.mark.parametrize("length", BOUNDARY_LENGTHS)
@settings(max_examples=12, deadline=None)
@given(**round_trip_arguments)
def test_round_trip_at_length_boundaries(length: int, **arguments) -> None:
    check_round_trip(length, **arguments)


@settings(max_examples=40, deadline=None)
@given(length=st.integers(0, 70_000), **round_trip_arguments)
def test_round_trip_at_random_lengths(length: int, **arguments) -> None:
    check_round_trip(length, **arguments)


@settings(max_examples=100)
@given(
    frames=st.lists(
        st.one_of(
            st.builds(
                Frame,
                opcode=st.sampled_from(DATA_OPCODES),
                payload=st.binary(max_size=300),
                fin=st.booleans(),
            ),
            st.builds(
                Frame,
                opcode=st.sampled_from(CONTROL_OPCODES),
                payload=st.binary(max_size=125),
            ),
        ),
        min_size=1,
        max_size=4,
    ),
    masked=st.booleans(),
)
def test_small_frames_fed_one_byte_at_a_time(frames: list[Frame], masked: bool) -> None:
    wire = b"".join(
        frame.serialize(mask=b"\x01\x02\x03\x04" if masked else None) for frame in frames
    )
    decoder = FrameDecoder(role="server" if masked else "client")
    decoded = []
    for index in range(len(wire)):
        decoded += decoder.feed(wire[index : index + 1])
    assert decoded == frames


def test_several_frames_in_one_piece() -> None:
    wire = encode_frame(Opcode.TEXT, b"a") + encode_frame(Opcode.PING, b"") + b"\x82"
    decoder = FrameDecoder(role="client")
    assert decoder.feed(wire) == [Frame(Opcode.TEXT, b"a"), Frame(Opcode.PING, b"")]
    assert decoder.buffered == 1


@pytest.mark.timeout(5)
def test_large_frame_in_tiny_pieces_is_not_quadratic() -> None:
    # 2 MiB in 100-byte pieces: ~20,000 feeds. Copying the buffer on each feed
    # would move ~20 GB and blow the timeout; a linear decoder takes ~50 ms.
    payload = bytes(2**21)
    wire = encode_frame(Opcode.BINARY, payload)
    decoder = FrameDecoder(role="client", max_size=None)
    frames = []
    for start in range(0, len(wire), 100):
        frames += decoder.feed(wire[start : start + 100])
    assert frames == [Frame(Opcode.BINARY, payload)]


# -- Framing rules, one test each --------------------------------------------------


def test_server_rejects_unmasked_frame() -> None:
    error = decode_error("server", encode_frame(Opcode.TEXT, b"Hello"))
    assert error.code == CloseCode.PROTOCOL_ERROR
    assert "not masked" in error.reason


def test_client_rejects_masked_frame() -> None:
    error = decode_error("client", encode_frame(Opcode.TEXT, b"Hello", mask=RFC_MASK))
    assert error.code == CloseCode.PROTOCOL_ERROR
    assert "masked" in error.reason


@pytest.mark.parametrize("bit", ["rsv1", "rsv2", "rsv3"])
def test_rsv_bits_without_extension(bit: str) -> None:
    error = decode_error("client", encode_frame(Opcode.TEXT, b"x", **{bit: True}))
    assert error.code == CloseCode.PROTOCOL_ERROR
    assert bit.upper() in error.reason


@pytest.mark.parametrize("opcode", [*range(0x3, 0x8), *range(0xB, 0x10)])
def test_reserved_opcodes(opcode: int) -> None:
    error = decode_error("client", encode_frame(opcode, b""))
    assert error.code == CloseCode.PROTOCOL_ERROR
    assert f"0x{opcode:X}" in error.reason


@pytest.mark.parametrize("opcode", CONTROL_OPCODES)
def test_control_frame_payload_over_125_bytes(opcode: Opcode) -> None:
    assert FrameDecoder(role="client").feed(encode_frame(Opcode.PING, b"x" * 125))
    error = decode_error("client", encode_frame(opcode, b"x" * 126))
    assert error.code == CloseCode.PROTOCOL_ERROR
    assert "125" in error.reason


@pytest.mark.parametrize("opcode", CONTROL_OPCODES)
def test_fragmented_control_frame(opcode: Opcode) -> None:
    error = decode_error("client", encode_frame(opcode, b"", fin=False))
    assert error.code == CloseCode.PROTOCOL_ERROR
    assert "fragmented" in error.reason


def test_64_bit_length_with_most_significant_bit_set() -> None:
    header = bytes([0x82, 0x7F]) + (2**63 + 70_000).to_bytes(8, "big")
    error = decode_error("client", header, max_size=None)
    assert error.code == CloseCode.PROTOCOL_ERROR
    assert "most significant bit" in error.reason


def test_16_bit_length_not_minimal() -> None:
    data = bytes([0x82, 0x7E, 0x00, 0x7D]) + b"x" * 125
    error = decode_error("client", data)
    assert error.code == CloseCode.PROTOCOL_ERROR
    assert "minimal" in error.reason


@pytest.mark.parametrize("length", [0, 125, 65535])
def test_64_bit_length_not_minimal(length: int) -> None:
    data = bytes([0x82, 0x7F]) + length.to_bytes(8, "big") + b"x" * length
    error = decode_error("client", data)
    assert error.code == CloseCode.PROTOCOL_ERROR
    assert "minimal" in error.reason


def test_frame_over_max_size_is_refused_from_its_header_alone() -> None:
    decoder = FrameDecoder(role="client", max_size=1000)
    assert decoder.feed(encode_frame(Opcode.BINARY, b"x" * 1000)) != []
    header = encode_frame(Opcode.BINARY, b"x" * 1001)[:4]  # no payload byte sent
    with pytest.raises(ProtocolError) as info:
        decoder.feed(header)
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG


def test_huge_announced_length_is_refused_without_buffering() -> None:
    header = bytes([0x82, 0x7F]) + (2**40).to_bytes(8, "big")
    error = decode_error("client", header)
    assert error.code == CloseCode.MESSAGE_TOO_BIG


def test_decoder_stays_dead_after_an_error() -> None:
    decoder = FrameDecoder(role="server")
    with pytest.raises(ProtocolError):
        decoder.feed(encode_frame(Opcode.TEXT, b"unmasked"))
    with pytest.raises(ProtocolError) as info:
        decoder.feed(encode_frame(Opcode.TEXT, b"fine", mask=RFC_MASK))
    assert info.value.code == CloseCode.PROTOCOL_ERROR


def test_invalid_role() -> None:
    with pytest.raises(ValueError, match="role"):
        FrameDecoder(role="proxy")  # type: ignore[arg-type]


# -- Display -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "text"),
    [
        (Frame(Opcode.TEXT, b"hello"), "TEXT 'hello' [5 bytes]"),
        (Frame(Opcode.TEXT, b""), "TEXT '' [0 bytes]"),
        (Frame(Opcode.BINARY, b"\x00"), "BINARY 00 [1 byte]"),
        (
            Frame(Opcode.BINARY, bytes(range(256)) * 4, fin=False),
            "BINARY 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f ... "
            "f8 f9 fa fb fc fd fe ff [1024 bytes, continued]",
        ),
        (Frame(Opcode.CLOSE, build_close(1000, "bye")), "CLOSE 1000 (OK) 'bye' [5 bytes]"),
        (Frame(Opcode.CLOSE, b""), "CLOSE (no status code) [0 bytes]"),
        (Frame(Opcode.CLOSE, b"\x03"), "CLOSE 03 [1 byte]"),
        (Frame(Opcode.PING, b"keepalive"), "PING 'keepalive' [9 bytes]"),
        (Frame(Opcode.PONG, b"\x8e\xf7\x1b\x02"), "PONG 8e f7 1b 02 [4 bytes]"),
        (Frame(Opcode.CONT, "é".encode(), fin=False), "CONT 'é' [2 bytes, continued]"),
        (Frame(Opcode.TEXT, "€".encode()[:2], fin=False), "TEXT '�' [2 bytes, continued]"),
        (Frame(Opcode.TEXT, b"x", rsv1=True), "TEXT 'x' [1 byte, rsv1]"),
    ],
)
def test_frame_str(frame: Frame, text: str) -> None:
    assert str(frame) == text


def test_long_text_is_elided_in_the_middle() -> None:
    text = str(Frame(Opcode.TEXT, ("a" * 500 + "b" * 500).encode()))
    assert text == f"TEXT '{'a' * 47}...{'b' * 23}' [1000 bytes]"
