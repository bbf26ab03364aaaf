"""How long to wait between reconnection attempts: exponential backoff, with jitter.

When a server restarts, every client loses its connection at the same instant.
Clients that retry at once, and then at fixed intervals, come back all
together, again and again: a *thundering herd* that can knock the new server
over. Backoff spreads the retries out in time (each wait longer than the last,
up to a cap), and jitter (a random part in each wait) spreads out clients that
lost the server at the same moment — RFC 6455 §7.2.3 asks for both.

``websockets`` already does this in ``async for websocket in connect(url)``; its
defaults (a random first wait of up to 5 s, then 3.1 s growing by 1.618 up to
90 s) suit the internet. :class:`Backoff` makes the same idea easy to set, which
a notebook or a test that restarts a server on loopback needs.
"""

from __future__ import annotations

import random
from collections.abc import Generator
from dataclasses import dataclass, field
from itertools import islice


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``first``, ``first * factor``, ... up to ``cap`` seconds, forever.

    ``jitter`` is the random share of each wait: 0 waits exactly the schedule,
    1 waits anything between 0 and the scheduled delay ("full jitter"), 0.5 between
    half of it and all of it. ``rng`` draws the random part; pass
    ``random.Random(seed)`` to make a run reproducible.

    An instance is what ``reconnect_delays`` expects from
    :func:`websockets.asyncio.client.connect`: a callable that starts a fresh
    sequence of delays each time a series of failed attempts begins::

        async for websocket in connect(url, reconnect_delays=Backoff(first=0.1, cap=10)):
            ...
    """

    first: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.0
    rng: random.Random | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.first < 0:
            raise ValueError(f"first must be 0 or more seconds, got {self.first}")
        if self.factor < 1:
            raise ValueError(
                f"factor must be 1 or more (delays must not shrink), got {self.factor}"
            )
        if self.cap < self.first:
            raise ValueError(f"cap ({self.cap}) must be at least first ({self.first})")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")

    def __call__(self) -> Generator[float]:
        """A fresh, endless sequence of delays in seconds."""
        rng = self.rng if self.rng is not None else random
        delay = self.first
        while True:
            yield delay * (1 - self.jitter * rng.random())
            delay = min(delay * self.factor, self.cap)

    def preview(self, attempts: int = 8) -> list[float]:
        """The first ``attempts`` delays, rounded to the millisecond, to print or plot."""
        return [round(delay, 3) for delay in islice(self(), attempts)]
