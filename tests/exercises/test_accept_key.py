"""Checks for exercise ``accept_key`` (exercises/01_handshake/accept_key.py)."""

from __future__ import annotations

import base64
import hashlib

import pytest
from websockets.utils import accept_key as reference  # independent of the course's code

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
KEYS = [
    "x3JJHMbDL1EzLkh9GBhXDw==",
    base64.b64encode(bytes(range(16))).decode(),
    base64.b64encode(b"\xff" * 16).decode(),
    "AQIDBAUGBwgJCgsMDQ4PEA==",
]


def compute(load, key: str) -> object:
    try:
        return load("accept_key").accept_key(key)
    except NotImplementedError as exc:
        pytest.fail(f"for key {key!r}: expected an answer, got NotImplementedError ({exc})")


def hint(key: str, got: object) -> str:
    """Name the usual mistakes when we recognise them."""
    decoded = base64.b64encode(
        hashlib.sha1(base64.b64decode(key) + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    ).decode()
    if got == decoded:
        return " (the key was base64-decoded first: use it as text)"
    if got == hashlib.sha1(f"{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11".encode()).hexdigest():
        return " (that's the hex digest: base64-encode the raw .digest() instead)"
    if isinstance(got, bytes):
        return " (bytes: .decode() the base64 to get a str)"
    return ""


def test_rfc_example(load):
    """The example key of RFC 6455 gives the RFC's answer"""
    got = compute(load, RFC_KEY)
    assert got == RFC_ACCEPT, (
        f"for key {RFC_KEY!r}: expected {RFC_ACCEPT!r}, got {got!r}{hint(RFC_KEY, got)}"
    )


def test_any_key(load):
    """Any key gives what the websockets library computes"""
    for key in KEYS:
        expected = reference(key)
        got = compute(load, key)
        assert got == expected, (
            f"for key {key!r}: expected {expected!r}, got {got!r}{hint(key, got)}"
        )


def test_returns_header_text(load):
    """The answer is a str of 28 characters, ready for a header"""
    got = compute(load, RFC_KEY)
    assert isinstance(got, str), f"for key {RFC_KEY!r}: expected a str, got {type(got).__name__}"
    assert len(got) == 28, (
        f"for key {RFC_KEY!r}: expected 28 characters (base64 of 20 bytes), got {got!r}"
    )
