"""Message assembly: fragmentation rules, message size and UTF-8 validation."""

import itertools
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from course_ws.rfc6455 import (
    MAX_FRAGMENTS,
    CloseCode,
    Frame,
    MessageAssembler,
    Opcode,
    ProtocolError,
)

TEXT, BINARY, CONT = Opcode.TEXT, Opcode.BINARY, Opcode.CONT


def assemble(*frames: Frame, max_size: int | None = 2**20) -> list[str | bytes | None]:
    assembler = MessageAssembler(max_size=max_size)
    return [assembler.feed(frame) for frame in frames]


def assembly_error(*frames: Frame, max_size: int | None = 2**20) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        assemble(*frames, max_size=max_size)
    return info.value


def test_single_frame_messages() -> None:
    assert assemble(Frame(TEXT, b"hi"), Frame(BINARY, b"\x00"), Frame(TEXT, b"")) == [
        "hi",
        b"\x00",
        "",
    ]


def test_fragmented_binary_message() -> None:
    frames = [Frame(BINARY, b"ab", fin=False), Frame(CONT, b"", fin=False), Frame(CONT, b"c")]
    assert assemble(*frames) == [None, None, b"abc"]


def test_character_split_across_fragments_is_valid() -> None:
    euro = "€".encode()  # e2 82 ac
    frames = [Frame(TEXT, b"5 " + euro[:1], fin=False), Frame(CONT, euro[1:2], fin=False)]
    assert assemble(*frames, Frame(CONT, euro[2:])) == [None, None, "5 €"]


@given(text=st.text(), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_any_text_split_anywhere_reassembles(text: str, cuts: list[int]) -> None:
    data = text.encode()
    bounds = sorted({0, len(data), *(cut for cut in cuts if cut < len(data))})
    pieces = [data[start:end] for start, end in itertools.pairwise(bounds)] or [b""]
    last = len(pieces) - 1
    frames = [Frame(CONT if i else TEXT, piece, fin=i == last) for i, piece in enumerate(pieces)]
    assert assemble(*frames)[-1] == text


def test_state_resets_between_messages() -> None:
    frames = [Frame(TEXT, b"a", fin=False), Frame(CONT, b"b"), Frame(BINARY, b"c")]
    assert assemble(*frames) == [None, "ab", b"c"]


def test_continuation_without_a_message() -> None:
    error = assembly_error(Frame(CONT, b"orphan"))
    assert error.code == CloseCode.PROTOCOL_ERROR
    assert "continuation" in error.reason


def test_continuation_after_a_complete_message() -> None:
    error = assembly_error(Frame(TEXT, b"done"), Frame(CONT, b"more"))
    assert error.code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_new_message_inside_a_fragmented_one(opcode: Opcode) -> None:
    error = assembly_error(Frame(TEXT, b"start", fin=False), Frame(opcode, b"intruder"))
    assert error.code == CloseCode.PROTOCOL_ERROR
    assert "fragmented TEXT" in error.reason


def test_message_at_max_size_is_accepted() -> None:
    frames = [Frame(BINARY, b"x" * 60, fin=False), Frame(CONT, b"x" * 40)]
    assert assemble(*frames, max_size=100)[-1] == b"x" * 100


def test_message_over_max_size() -> None:
    # Each fragment is small: only the running total reveals the problem.
    frames = [Frame(BINARY, b"x" * 60, fin=False), Frame(CONT, b"x" * 41)]
    error = assembly_error(*frames, max_size=100)
    assert error.code == CloseCode.MESSAGE_TOO_BIG


def test_no_max_size() -> None:
    assert assemble(Frame(BINARY, b"x" * 3_000_000), max_size=None) == [b"x" * 3_000_000]


def test_invalid_utf8_in_single_frame() -> None:
    error = assembly_error(Frame(TEXT, b"caf\xe9"))  # Latin-1, not UTF-8
    assert error.code == CloseCode.INVALID_DATA


@pytest.mark.parametrize(
    "fragment",
    [b"\xf4\x90", b"\xc0\xaf", b"ok\xff", b"\xe0\x80"],
    ids=["beyond-U+10FFFF", "overlong", "invalid-byte", "overlong-3-bytes"],
)
def test_invalid_utf8_is_detected_in_the_fragment_that_contains_it(fragment: bytes) -> None:
    assembler = MessageAssembler()
    with pytest.raises(ProtocolError) as info:
        assembler.feed(Frame(TEXT, fragment, fin=False))  # the message isn't over yet
    assert info.value.code == CloseCode.INVALID_DATA


def test_message_ending_inside_a_character() -> None:
    error = assembly_error(Frame(TEXT, b"\xe2\x82", fin=False), Frame(CONT, b""))
    assert error.code == CloseCode.INVALID_DATA


def test_binary_messages_are_not_utf8_checked() -> None:
    assert assemble(Frame(BINARY, b"\xff\xfe")) == [b"\xff\xfe"]


@pytest.mark.parametrize("opcode", [Opcode.PING, Opcode.PONG, Opcode.CLOSE])
def test_control_frames_are_the_callers_job(opcode: Opcode) -> None:
    with pytest.raises(ValueError, match="control frame"):
        MessageAssembler().feed(Frame(opcode, b""))


# -- fragment floods: what a message in pieces may cost ----------------------------


def feed_until_refused(assembler: MessageAssembler, fragment: Frame, limit: int) -> ProtocolError:
    """Feed ``fragment`` again and again; the error that stops it, checking memory each time."""
    for _ in range(limit):
        assert assembler.max_size is None or assembler.buffered <= assembler.max_size
        try:
            assembler.feed(fragment)
        except ProtocolError as exc:
            return exc
    raise AssertionError(f"{limit} fragments and still accepted")


def test_fragment_count_is_capped_with_1009() -> None:
    assembler = MessageAssembler(max_fragments=4)
    pieces = [Frame(BINARY, b"a", fin=False), Frame(CONT, b"", fin=False), Frame(CONT, b"b")]
    assert [assembler.feed(frame) for frame in pieces] == [None, None, b"ab"]  # 3 fragments
    for frame in [Frame(BINARY, b"", fin=False), *[Frame(CONT, b"", fin=False)] * 3]:
        assert assembler.feed(frame) is None  # 4 fragments: at the cap, still fine
    with pytest.raises(ProtocolError) as info:
        assembler.feed(Frame(CONT, b"z"))
    assert info.value.code == CloseCode.MESSAGE_TOO_BIG
    assert "more than 4 fragments" in info.value.reason


def test_default_fragment_cap() -> None:
    assert MessageAssembler().max_fragments == MAX_FRAGMENTS == 1024


def test_endless_empty_continuation_frames_end_with_1009() -> None:
    """Empty fragments add no bytes, so max_size alone never stops them."""
    assembler = MessageAssembler()
    assembler.feed(Frame(TEXT, b"", fin=False))
    error = feed_until_refused(assembler, Frame(CONT, b"", fin=False), 10**6)
    assert error.code == CloseCode.MESSAGE_TOO_BIG
    assert assembler.fragments == MAX_FRAGMENTS
    assert assembler.buffered == 0


def test_buffered_bytes_are_the_payload_and_nothing_per_fragment() -> None:
    """100,000 fragments of 2 bytes cost ~200 KB, not a Python object each (~5 MB)."""
    count, size = 100_000, 2
    assembler = MessageAssembler(max_fragments=None)
    tracemalloc.start()
    try:
        # Each payload is a fresh object, as the frame decoder makes them.
        assembler.feed(Frame(BINARY, bytes(size), fin=False))
        for _ in range(count - 1):
            assembler.feed(Frame(CONT, bytes(size), fin=False))
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert assembler.buffered == count * size
    assert assembler.fragments == count
    assert held < 2 * count * size, f"{held} bytes held for {count * size} bytes of payload"
    assert assembler.feed(Frame(CONT, b"!")) == bytes(count * size) + b"!"
    assert (assembler.buffered, assembler.fragments) == (0, 0)


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_buffered_never_exceeds_max_size(opcode: Opcode) -> None:
    assembler = MessageAssembler(max_size=1000, max_fragments=None)
    assembler.feed(Frame(opcode, b"a", fin=False))
    error = feed_until_refused(assembler, Frame(CONT, b"a", fin=False), 2000)
    assert error.code == CloseCode.MESSAGE_TOO_BIG
    assert assembler.buffered == 1000
