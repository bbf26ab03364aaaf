"""Hostile frames after a good handshake: every server ends them with the right close code.

Parametrised over the catalogue by ``conftest.py``, like the handshake attacks.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from urllib.parse import urlsplit

from course_ws import BackgroundServer
from course_ws.rfc6455 import Opcode, encode_frame
from course_ws.rfc6455.handshake import build_request

MASK = b"\x01\x02\x03\x04"


def upgraded(server: BackgroundServer) -> socket.socket:
    """A raw socket whose ``/echo`` handshake has completed."""
    parts = urlsplit(server.url)
    host = f"{parts.hostname}:{parts.port}"
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    request = build_request(host, "/echo")
    sock.sendall(request[0] if isinstance(request, tuple) else request)
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    return sock


def close_code(sock: socket.socket) -> int | None:
    """Read until the server's close frame; its code (``None`` if the TCP connection just ended)."""
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        data += chunk
        at = data.find(bytes([0x80 | Opcode.CLOSE]))
        if at >= 0 and len(data) >= at + 4:
            code = int(struct.unpack("!H", data[at + 2 : at + 4])[0])
            # Answer, as a client should, unless the server has hung up already.
            with contextlib.suppress(OSError):
                sock.sendall(encode_frame(Opcode.CLOSE, data[at + 2 : at + 4], mask=MASK))
            return code
    return None


def flood(sock: socket.socket, first: bytes, frame: bytes, count: int) -> None:
    """Send ``first``, then ``frame`` up to ``count`` times, until the server stops reading."""
    sock.settimeout(0.5)  # a server that stopped reading (it has closed) blocks the send
    try:
        sock.sendall(first)
        for start in range(0, count, 1000):
            sock.sendall(frame * min(1000, count - start))
    except (BrokenPipeError, ConnectionResetError, TimeoutError):
        pass
    sock.settimeout(10)


def test_endless_empty_continuation_frames_are_closed_with_1009(server: BackgroundServer):
    sock = upgraded(server)
    with sock:
        empty = encode_frame(Opcode.CONT, b"", fin=False, mask=MASK)
        flood(sock, encode_frame(Opcode.TEXT, b"a", fin=False, mask=MASK), empty, 1_000_000)
        assert close_code(sock) == 1009


def test_a_message_over_max_size_in_small_fragments_is_closed_with_1009(server: BackgroundServer):
    sock = upgraded(server)
    with sock:
        chunk = encode_frame(Opcode.CONT, b"x" * 4096, fin=False, mask=MASK)
        first = encode_frame(Opcode.BINARY, b"x", fin=False, mask=MASK)
        flood(sock, first, chunk, 2**20 // 4096 + 10)  # over the default 1 MiB max_size
        assert close_code(sock) == 1009
