"""Every catalogue server listens with the course's backlog, not asyncio's default of 100.

asyncio's ``create_server(sock=...)`` calls ``listen()`` again on the socket it is
given, with a backlog of 100 unless told otherwise: the ``chat`` and ``raw``
servers listened with 100 although ``bind_listener`` had asked for 2048. Linux
reports a listening socket's backlog in ``TCP_INFO`` (``tcpi_sacked``).
"""

from __future__ import annotations

import socket
import struct

import pytest

from course_ws import serve_in_background
from course_ws.hosting.catalogue import CATALOGUE
from course_ws.options import BACKLOG

pytestmark = pytest.mark.skipif(
    not hasattr(socket, "TCP_INFO"), reason="reads the backlog from TCP_INFO (Linux)"
)


def listen_backlog(sock: socket.socket) -> int:
    """The backlog of a listening socket: ``tcpi_sacked`` in Linux's ``struct tcp_info``."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    # 8 one-byte fields, then u32s: rto, ato, snd_mss, rcv_mss, unacked, sacked, ...
    return struct.unpack_from("I", info, 8 + 5 * 4)[0]


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_the_server_listens_with_the_course_backlog(name: str) -> None:
    with serve_in_background(name) as server:
        assert listen_backlog(server._sock) == min(BACKLOG, somaxconn())


def somaxconn() -> int:
    with open("/proc/sys/net/core/somaxconn") as value:
        return int(value.read())
