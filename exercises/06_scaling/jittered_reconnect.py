"""Exercise 06 · jittered_reconnect — clients that come back after a restart, but not all at once.

Deploy a new version, restart a worker, lose a load balancer: every client of
that server loses its connection at the same instant. If each reconnects at
once — or after the same fixed delay — they all arrive together, a *thundering
herd* of handshakes, ``?since=`` replays and joins that can knock the fresh
server over and start it all again. RFC 6455, section 7.2.3, says what a client
should do instead: delay its **first** reconnection attempt after an abnormal
closure **by a random amount of time**, and back off further after each
attempt that fails ("truncated binary exponential backoff").

Two parts:

1. ``jittered_delays(first, base, factor, cap, rng)``, a generator of delays in
   seconds, endless, all drawn from ``rng`` (a :class:`random.Random`; a new one
   when ``None``, so that a test can seed it and the global ``random`` stays
   untouched):

   * the first, ``rng.uniform(0, first)``: the random first delay of RFC 6455;
   * then **full jitter**: ``rng.uniform(0, ceiling)`` with ``ceiling`` starting at
     ``base`` (capped at ``cap``) and multiplied by ``factor`` after each delay, never above
     ``cap``. "Full" because each delay is anything from 0 to the ceiling: waits
     ``ceiling / 2`` on average, and spreads a herd over the whole interval, where
     a jitter of ±10 % around the ceiling would keep it in a tight band.

   ``functools.partial(jittered_delays, cap=10)`` is what ``websockets``' ``connect``
   takes as ``reconnect_delays``: a callable that starts a fresh sequence.

2. ``reconnecting(url, delays)``: ``async for websocket in reconnecting(url): ...``, like
   ``async for websocket in connect(url)``, plus the wait that ``websockets`` does not
   do. In websockets 17 (``websockets/asyncio/client.py``, ``connect.__aiter__``), the
   loop draws a delay only when an *attempt fails*: after a connection that was
   *lost*, the next attempt starts **at once**, and a success resets the delays.
   So after a server restart every client's first attempt lands in the same
   millisecond; only those refused spread out. Add the missing wait:

   * keep the current sequence in a variable, ``schedule = delays()``, and give
     ``connect`` a ``reconnect_delays`` that *continues* it, ``lambda: schedule``, so
     that attempts failing after the wait below go on with the same sequence;
   * after each connection (the body of the caller's ``async for`` is done with
     it: it was lost), start a fresh sequence, ``schedule = delays()``, and
     ``await asyncio.sleep(next(schedule))`` — the random first delay — before
     letting ``connect`` try again.

   The caller's body should use the connection until it closes (``async for message
   in websocket``); leaving the loop (``break``, ``return``) ends it all.

Written for you: the loop over ``connect``, closed properly when the caller leaves
(``contextlib.aclosing``). The package's :class:`course_ws.clients.backoff.Backoff`
is the same idea as a class, with a ``jitter`` share between none and full.

Try it: ``course-ws serve chat``, then run a few clients in a notebook with
``async for websocket in reconnecting("ws://127.0.0.1:8000/chat/lobby",
delays=partial(jittered_delays, first=2.0))`` and restart the server: the
server's log shows the connections coming back spread over two seconds. Check your
work with ``course_ws.check("jittered_reconnect")`` in a notebook, or ``course-ws
check jittered_reconnect`` in a terminal.
"""

import asyncio  # noqa: F401
import contextlib
import random
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


def jittered_delays(
    first: float = 1.0,
    base: float = 0.5,
    factor: float = 2.0,
    cap: float = 30.0,
    rng: random.Random | None = None,
) -> Generator[float]:
    """Seconds to wait before each reconnection attempt: a random first one, then full
    jitter under a ceiling growing from ``base`` by ``factor`` up to ``cap``; endless."""
    # TODO 1: ``rng = rng if rng is not None else random.Random()``; the first delay is
    #         ``rng.uniform(0, first)``, not ``first`` itself.
    # TODO 2: then full jitter: yield ``rng.uniform(0, ceiling)``, where ``ceiling`` starts at
    #         ``min(base, cap)`` and is multiplied by ``factor`` after each delay, up to ``cap``.
    # As it is: no randomness at all, so clients that lost their server together retry
    # together, every time.
    yield first
    delay = min(base, cap)
    while True:
        yield delay
        delay = min(delay * factor, cap)


async def reconnecting(
    url: str,
    *,
    delays: Callable[[], Generator[float]] = jittered_delays,
    **connect_options: Any,
) -> AsyncIterator[ClientConnection]:
    """Connections to ``url``, one after another; a random wait before each reconnection."""
    # TODO 3: ``schedule = delays()``, and give ``connect`` ``reconnect_delays=lambda: schedule``
    #         (a failed attempt goes on with the current sequence).
    attempts = connect(url, reconnect_delays=delays, **connect_options)
    async with contextlib.aclosing(aiter(attempts)) as connections:
        async for websocket in connections:
            yield websocket
            # TODO 4: the connection was lost: ``schedule = delays()`` (a fresh sequence), and
            #         ``await asyncio.sleep(next(schedule))`` before ``connect`` tries again.
            #         As it is, websockets reconnects at once: all clients in the same instant.
