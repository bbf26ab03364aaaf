"""A bounded wait for a condition that some other task or thread will make true.

Notebook cells and tests often need "wait until the client has reconnected",
where no event is at hand to await. Polling a cheap predicate every few
milliseconds is simple and, with a timeout, can never hang a notebook.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection


async def wait_until(
    predicate: Callable[[], bool], *, within: float, interval: float = 0.01, what: str = ""
) -> None:
    """Return as soon as ``predicate()`` is true; raise :class:`TimeoutError` after ``within`` s.

    ``what`` names the condition in the error message ("the client reconnected").
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() >= deadline:
            raise TimeoutError(f"{what or 'the condition'} did not happen within {within:g} s")
        await asyncio.sleep(interval)


TCP_ESTABLISHED = 1
"""``tcpi_state`` of an open TCP connection (Linux ``TCP_INFO``)."""


def tcp_established(websocket: ClientConnection) -> bool:
    """Whether the kernel still has ``websocket``'s TCP connection open, read without reading data.

    A client that stopped reading cannot ``recv`` to learn that the server
    dropped it (reading is what it stopped doing), and a FIN would wait behind
    the data it never read; a reset arrives at once and moves the socket out of
    ESTABLISHED. Linux only (``TCP_INFO``).
    """
    sock = websocket.transport.get_extra_info("socket")
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:  # the client has closed its socket already (it saw the reset)
        return False
    return int(state) == TCP_ESTABLISHED


async def wait_dropped(websocket: ClientConnection, *, within: float) -> float:
    """The loop time at which the server ended ``websocket``'s TCP connection.

    Raises :class:`TimeoutError` if it is still open after ``within`` seconds.
    """
    await wait_until(
        lambda: not tcp_established(websocket),
        within=within,
        interval=0.005,
        what="the server dropping the connection",
    )
    return asyncio.get_running_loop().time()
