"""Close payloads: building, parsing and validating code and reason."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from course_ws.rfc6455 import (
    CLOSE_CODE_EXPLANATIONS,
    Close,
    CloseCode,
    ProtocolError,
    build_close,
    explain_close_code,
    is_valid_close_code,
    parse_close,
)

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
VALID_CODES += [3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]


def test_build_close_with_code_and_reason() -> None:
    assert build_close(1000, "bye") == b"\x03\xe8bye"
    assert build_close(CloseCode.GOING_AWAY) == b"\x03\xe9"


def test_build_close_without_code_is_empty() -> None:
    assert build_close(None) == b""


def test_reason_without_code_is_refused() -> None:
    with pytest.raises(ValueError, match="requires a close code"):
        build_close(None, "why")


@pytest.mark.parametrize("code", INVALID_CODES)
def test_build_close_refuses_codes_not_allowed_on_the_wire(code: int) -> None:
    with pytest.raises(ValueError, match=str(code)):
        build_close(code)


def test_reason_limit_is_123_bytes_of_utf8() -> None:
    assert len(build_close(1000, "x" * 123)) == 125
    with pytest.raises(ValueError, match="124 bytes"):
        build_close(1000, "x" * 124)
    with pytest.raises(ValueError, match="124 bytes"):
        build_close(1000, "é" * 62)  # 62 characters, 124 bytes


def test_parse_empty_payload_means_no_code() -> None:
    assert parse_close(b"") == Close(None, "")


def test_parse_one_byte_payload_is_protocol_error() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close(b"\x03")
    assert info.value.code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("code", INVALID_CODES)
def test_parse_refuses_codes_not_allowed_on_the_wire(code: int) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close(code.to_bytes(2, "big"))
    assert info.value.code == CloseCode.PROTOCOL_ERROR


@pytest.mark.parametrize("code", VALID_CODES)
def test_parse_accepts_codes_allowed_on_the_wire(code: int) -> None:
    assert is_valid_close_code(code)
    assert parse_close(code.to_bytes(2, "big") + b"ok") == (code, "ok")


def test_reason_must_be_utf8() -> None:
    with pytest.raises(ProtocolError) as info:
        parse_close(b"\x03\xe8\xff")
    assert info.value.code == CloseCode.INVALID_DATA


def test_known_codes_come_back_as_enum_members() -> None:
    code, reason = parse_close(b"\x03\xe8bye")
    assert code is CloseCode.NORMAL_CLOSURE
    assert reason == "bye"
    assert type(parse_close(b"\x0f\xa0").code) is int  # 4000 is not a member


@given(
    code=st.sampled_from(VALID_CODES) | st.integers(3000, 4999),
    reason=st.text(max_size=40),
)
def test_build_then_parse_round_trip(code: int, reason: str) -> None:
    assert parse_close(build_close(code, reason)) == (code, reason)


@pytest.mark.parametrize(
    ("close", "text"),
    [
        (Close(1000, "bye"), "1000 (OK) 'bye'"),
        (Close(CloseCode.GOING_AWAY), "1001 (going away)"),
        (Close(3000), "3000 (registered)"),
        (Close(4000, "custom"), "4000 (private use) 'custom'"),
        (Close(2000), "2000 (unknown)"),
        (Close(None), "(no status code)"),
    ],
)
def test_close_str(close: Close, text: str) -> None:
    assert str(close) == text


def test_every_close_code_has_an_explanation() -> None:
    assert all(code in CLOSE_CODE_EXPLANATIONS for code in CloseCode)
    assert explain_close_code(1004) == "reserved"
