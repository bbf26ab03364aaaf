"""A token bucket: a client may say ``rate`` messages a second, in bursts of ``burst``."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """Refills at ``rate`` tokens a second up to ``burst``; each message takes one.

    Bursts are what people do (paste three lines, hit enter fast); a sustained
    flood is what scripts do. The bucket allows the first and refuses the second.
    """

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be positive and burst at least 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def take(self) -> bool:
        """Take a token if there is one; ``False`` means "too fast, drop this message"."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False
