"""Rate limits per client address: messages, connection attempts and open connections.

A limit kept per *connection* is no limit: a client that reconnects in a loop
gets a fresh bucket each time (4,015 messages/s were accepted that way). So the
buckets belong to the client's address and every connection from it shares
them; connection attempts and open connections are limited per address too.

Behind a reverse proxy every client has the proxy's address. The server then
limits the proxy as one client, unless the proxy is *trusted*: for a peer in
``trusted_proxies``, the client is the rightmost address of
``X-Forwarded-For`` that is not itself a trusted proxy
(:func:`client_address`). Never trust the header from anyone else: a client can
write whatever it likes into it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

MAX_ADDRESSES = 100_000
"""Addresses remembered at once; beyond it the least recently seen idle ones are forgotten."""


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

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def take(self) -> bool:
        """Take a token if there is one; ``False`` means "too fast, drop this message"."""
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    @property
    def full(self) -> bool:
        """Whether the bucket has refilled completely (forgetting it would give nothing away)."""
        self._refill()
        return self._tokens >= self.burst


@dataclass
class AddressState:
    """What one client address holds: its shared buckets and its open connections."""

    messages: TokenBucket
    attempts: TokenBucket
    connections: int = field(default=0)


@dataclass(frozen=True)
class AddressLimits:
    """The limits for one address."""

    message_rate: float = 10.0
    message_burst: int = 20
    connect_rate: float = 20.0
    connect_burst: int = 100
    max_connections: int = 256


class PerAddress:
    """Buckets and connection counts by client address, bounded in how many it remembers.

    An address is forgotten once it has no connection and its buckets are full
    again (it has been quiet long enough that forgetting gives nothing away),
    checked for the least recently seen address at every new attempt: the
    table stays small without a timer, and each call costs O(1).
    """

    def __init__(
        self,
        limits: AddressLimits,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self.max_addresses = max_addresses
        self._states: OrderedDict[str, AddressState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._states)

    def _state(self, address: str) -> AddressState:
        state = self._states.get(address)
        if state is None:
            limits = self.limits
            state = AddressState(
                TokenBucket(limits.message_rate, limits.message_burst, self._clock),
                TokenBucket(limits.connect_rate, limits.connect_burst, self._clock),
            )
            self._states[address] = state
        self._states.move_to_end(address)
        return state

    def _forget_quiet(self) -> None:
        """Forget the least recently seen address if it is idle (and more while over the cap)."""
        while self._states:
            address, state = next(iter(self._states.items()))
            quiet = state.connections == 0 and state.messages.full and state.attempts.full
            crowded = len(self._states) > self.max_addresses and state.connections == 0
            if not (quiet or crowded):
                return
            del self._states[address]

    def attempt(self, address: str) -> str | None:
        """Count a connection attempt; the reason to refuse it (HTTP 429), or ``None``."""
        self._forget_quiet()
        state = self._state(address)
        if not state.attempts.take():
            return f"too many connection attempts from {address}; wait a little"
        if state.connections >= self.limits.max_connections:
            return f"too many connections from {address} (limit {self.limits.max_connections})"
        return None

    def message(self, address: str) -> bool:
        """Take a message from the bucket of ``address`` (no connection); ``False``: none left."""
        self._forget_quiet()
        return self._state(address).messages.take()

    def opened(self, address: str) -> TokenBucket:
        """A connection from ``address`` opened: the message bucket its connections share."""
        state = self._state(address)
        state.connections += 1
        return state.messages

    def closed(self, address: str) -> None:
        """A connection from ``address`` closed."""
        state = self._states.get(address)
        if state is not None and state.connections > 0:
            state.connections -= 1


def client_address(
    peer: str | None, forwarded_for: str | None, trusted_proxies: Collection[str] = ()
) -> str:
    """The address limits apply to: the peer, or the client a trusted proxy forwarded.

    ``forwarded_for`` is the ``X-Forwarded-For`` header (``client, proxy1, proxy2``);
    it is read only when ``peer`` is a trusted proxy, from the right, skipping
    the trusted proxies that appended to it.
    """
    address = peer or "unknown"
    if address not in trusted_proxies or not forwarded_for:
        return address
    for hop in reversed([part.strip() for part in forwarded_for.split(",")]):
        if hop and hop not in trusted_proxies:
            return hop
    return address
