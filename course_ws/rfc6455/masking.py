"""Client-to-server masking (RFC 6455 §5.3).

Every frame a client sends is XORed with a fresh, unpredictable 4-byte key,
byte ``i`` with ``key[i % 4]``.  It isn't encryption — the key travels in the
frame header.  It protects *intermediaries*: a script in a browser must not be
able to choose the exact bytes that go on the wire, or it could forge what
looks like an HTTP request to a transparent proxy and poison its cache
("Talking to Yourself for Fun and Profit", Huang et al., 2011).  Servers never
mask.

XOR is its own inverse, so the same function masks and unmasks.
"""

from __future__ import annotations

import secrets

__all__ = ["generate_mask", "mask_bytes", "mask_bytes_naive"]


def generate_mask() -> bytes:
    """Return a fresh 4-byte masking key.

    The RFC requires keys to be unpredictable ("derived from a strong source
    of entropy"), so this uses :mod:`secrets`, not :mod:`random`: an attacker
    who could predict the key could still choose the bytes on the wire.
    """
    return secrets.token_bytes(4)


def mask_bytes(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with ``key`` repeated; applying it twice gives ``data`` back.

    A Python loop over each byte costs ~100 ns per byte, i.e. 0.1 s per MiB.
    Instead we let CPython's arbitrary-precision integers do the work in C:
    turn the payload into one huge integer, turn the key repeated to the same
    length into another, XOR them, and turn the result back into bytes. XOR
    acts on each bit independently, so XORing the integers XORs every byte
    with the byte at the same position.  About 20x faster than
    :func:`mask_bytes_naive`.
    """
    if len(key) != 4:
        raise ValueError(f"masking key must be 4 bytes, got {len(key)}")
    length = len(data)
    repeated_key = key * (length // 4) + key[: length % 4]
    # Any byte order works, as long as all three conversions use the same one.
    masked = int.from_bytes(data, "big") ^ int.from_bytes(repeated_key, "big")
    return masked.to_bytes(length, "big")


def mask_bytes_naive(data: bytes, key: bytes) -> bytes:
    """The definition of masking, one byte at a time, straight from §5.3.

    Too slow for real traffic; kept as the obviously-correct reference that
    tests compare :func:`mask_bytes` against, and as a benchmark baseline.
    """
    if len(key) != 4:
        raise ValueError(f"masking key must be 4 bytes, got {len(key)}")
    return bytes(byte ^ key[i % 4] for i, byte in enumerate(data))
