"""Sending on a schedule: a heartbeat, a sensor reading, a price, every N milliseconds.

The obvious loop, ``while True: await websocket.send(x); await asyncio.sleep(interval)``,
has three problems that :func:`send_every` avoids:

* it drifts: each round takes ``interval`` *plus* the time to send, so ten
  sends a second become nine and a half; here every send has a deadline on a
  fixed grid (``start + n * interval``);
* after a stall (a blocked event loop, a slow network) it does not catch up
  calmly; here missed ticks are skipped instead of sent in a burst;
* it notices a closed connection only when its next ``send`` fails, up to a
  whole interval late, with an exception to handle; here the wait between
  sends also watches the connection, and the function simply returns.

Messages come from an iterable that the caller owns, so a sequence can outlive
one connection: give the same iterator to the sender on every reconnect and
the numbering carries on where it stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.typing import Data


async def send_every(websocket: Connection, interval: float, messages: Iterable[Data]) -> int:
    """Send the next of ``messages`` every ``interval`` seconds, the first one at once.

    Return the number of messages sent when ``messages`` runs out or the
    connection closes (a closed connection is the normal end, not an error).
    A message is taken from ``messages`` only when the connection is open, so
    none is consumed by a connection that has already gone; once taken, it is
    handed to the network, which may still lose it if the connection drops
    right then (at most once: chapter 09 shows how to resume without loss).
    """
    if interval <= 0:
        raise ValueError(f"interval must be positive, got {interval}")
    loop = asyncio.get_running_loop()
    iterator = iter(messages)
    sent = 0
    deadline = loop.time()
    while websocket.state is State.OPEN:
        try:
            message = next(iterator)
        except StopIteration:
            return sent
        try:
            await websocket.send(message)
        except ConnectionClosed:
            return sent
        sent += 1
        deadline += interval
        now = loop.time()
        if deadline < now:  # we fell behind: skip the missed ticks, no burst
            deadline += (now - deadline) // interval * interval + interval
        try:
            async with asyncio.timeout_at(deadline):
                await websocket.wait_closed()
        except TimeoutError:
            continue  # time for the next message
    return sent
