"""Masking: the fast XOR trick must agree with the per-byte definition."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from course_ws.rfc6455 import generate_mask, mask_bytes, mask_bytes_naive

keys = st.binary(min_size=4, max_size=4)


@given(data=st.binary(max_size=2000), key=keys)
def test_fast_masking_equals_naive_definition(data: bytes, key: bytes) -> None:
    assert mask_bytes(data, key) == mask_bytes_naive(data, key)


@given(data=st.binary(max_size=2000), key=keys)
def test_masking_twice_is_identity(data: bytes, key: bytes) -> None:
    assert mask_bytes(mask_bytes(data, key), key) == data


def test_rfc_example_mask() -> None:
    # RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d.
    assert mask_bytes(b"Hello", bytes.fromhex("37fa213d")) == bytes.fromhex("7f9f4d5158")


def test_leading_zero_bytes_survive() -> None:
    # Integers drop leading zeros: to_bytes(length) must put them back.
    key = b"\x00\x00\x00\x00"
    assert mask_bytes(b"\x00\x00abc", key) == b"\x00\x00abc"
    assert mask_bytes(b"\x00" * 7, b"\x01\x02\x03\x04") == bytes([1, 2, 3, 4, 1, 2, 3])


def test_large_payload_not_multiple_of_four() -> None:
    data = bytes(range(256)) * 4000 + b"xyz"
    key = b"\xde\xad\xbe\xef"
    assert mask_bytes(data, key) == mask_bytes_naive(data, key)


@pytest.mark.parametrize("function", [mask_bytes, mask_bytes_naive])
@pytest.mark.parametrize("key", [b"", b"abc", b"abcde"])
def test_key_must_be_four_bytes(function, key: bytes) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        function(b"data", key)


def test_generate_mask_is_four_fresh_bytes() -> None:
    masks = {generate_mask() for _ in range(20)}
    assert all(len(mask) == 4 for mask in masks)
    assert len(masks) > 1
