"""Notebook 06b's internet scale on paper: a fan-out simulation and a back-of-the-envelope.

A million connections spread by a load balancer over ``hosts`` servers, in rooms
whose sizes follow some distribution. Each member says ``rate`` messages per
second. Two costs follow from the room sizes alone:

- **deliveries** (frames written to sockets): a room of ``s`` members hears
  ``rate × s`` messages per second and writes each to ``s`` members, so
  ``rate × s²``; the whole system ``rate × Σ s²``, dominated by the big rooms;
- **bus traffic** (what Redis or NATS sends to the hosts): each message goes once
  to every host that has a member of the room, ``rate × s × hosts(room)``, where
  ``hosts(room)`` is at most ``min(s, hosts)``.

:func:`simulate_fanout` places every member on a random host, as a load balancer
without sticky sessions does, and counts both; :func:`expected_hosts` is the
formula the simulation checks. Deterministic for a given ``seed``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

ROOM_SIZE_CAP = 100_000
"""The largest room the simulated distributions draw (a tenth of a million connections)."""


def equal_rooms(size: int) -> Callable[[random.Random], int]:
    """Every room has ``size`` members."""
    return lambda rng: size


def pareto_rooms(alpha: float, smallest: int = 2) -> Callable[[random.Random], int]:
    """Room sizes from a Pareto law (most rooms small, a few huge), ``smallest`` and up,
    capped at :data:`ROOM_SIZE_CAP`; a smaller ``alpha`` is a heavier tail."""
    return lambda rng: min(ROOM_SIZE_CAP, int(smallest * rng.paretovariate(alpha)))


def room_sizes(
    connections: int, draw: Callable[[random.Random], int], rng: random.Random
) -> list[int]:
    """Rooms drawn one after the other until they hold exactly ``connections`` members."""
    sizes: list[int] = []
    left = connections
    while left:
        size = min(left, max(1, draw(rng)))
        sizes.append(size)
        left -= size
    return sizes


def expected_hosts(size: int, hosts: int) -> float:
    """How many of ``hosts`` hold at least one of a room's ``size`` members, on average,
    when each member lands on a host at random: ``hosts × (1 - (1 - 1/hosts)^size)``."""
    return hosts * (1 - (1 - 1 / hosts) ** size)


@dataclass(frozen=True)
class FanoutCost:
    """What one room-size distribution costs a system of ``hosts`` servers, per second."""

    name: str
    connections: int
    hosts: int
    rate: float
    """Messages per second that each member says."""
    sizes: list[int]
    spread: list[int]
    """For each room, the number of hosts with a member of it (simulated)."""

    @property
    def rooms(self) -> int:
        return len(self.sizes)

    @property
    def messages(self) -> float:
        """Messages said per second, all rooms together: ``rate × connections``."""
        return self.rate * sum(self.sizes)

    @property
    def deliveries(self) -> float:
        """Frames written to members per second: ``rate × Σ s²``."""
        return self.rate * sum(size * size for size in self.sizes)

    @property
    def bus_messages(self) -> float:
        """Messages the bus sends to hosts per second: ``rate × Σ s × hosts(room)``."""
        return self.rate * sum(s * h for s, h in zip(self.sizes, self.spread, strict=True))

    @property
    def bus_messages_expected(self) -> float:
        """The same from :func:`expected_hosts`, without the simulation."""
        return self.rate * sum(s * expected_hosts(s, self.hosts) for s in self.sizes)

    def largest_rooms_share(self, top: int) -> float:
        """The share of all deliveries that the ``top`` largest rooms make (0 to 1)."""
        squares = sorted((size * size for size in self.sizes), reverse=True)
        return sum(squares[:top]) / sum(squares)

    def __str__(self) -> str:
        return (
            f"{self.name}: {self.rooms:,} rooms, largest {max(self.sizes):,}; "
            f"{self.messages:,.0f} msg/s in, {self.deliveries:,.0f} deliveries/s out, "
            f"bus to hosts {self.bus_messages:,.0f} msg/s"
        )


def simulate_fanout(
    name: str,
    draw: Callable[[random.Random], int],
    *,
    connections: int = 1_000_000,
    hosts: int = 20,
    rate: float = 1 / 60,
    seed: int = 6,
) -> FanoutCost:
    """Draw rooms for ``connections`` members, put each member on one of ``hosts`` at random,
    and return what that costs at ``rate`` messages per member per second."""
    rng = random.Random(seed)
    sizes = room_sizes(connections, draw, rng)
    everyone = range(hosts)
    spread = [
        hosts if size > 50 * hosts else len(set(rng.choices(everyone, k=size))) for size in sizes
    ]  # a room 50 times larger than the fleet misses a host with probability < hosts·e^-50
    return FanoutCost(name, connections, hosts, rate, sizes, spread)


@dataclass(frozen=True)
class Envelope:
    """A back-of-the-envelope for ``connections`` WebSocket connections, from measured
    figures: server memory per connection, deliveries per second per core, bytes per frame."""

    connections: int
    memory_per_connection: float
    """Bytes of server memory per connection (measured: RSS growth / connections)."""
    deliveries_per_core: float
    """Frames one core writes per second (measured: deliveries / server CPU seconds)."""
    deliveries: float
    """Frames the system must write per second (from the room sizes and the rate)."""
    frame_bytes: int
    """Bytes on the wire per delivered frame (a chat event and its frame header)."""
    memory_per_host: float = 16 * 2**30
    cores_per_host: int = 8

    @property
    def memory(self) -> float:
        return self.connections * self.memory_per_connection

    @property
    def cores(self) -> float:
        return self.deliveries / self.deliveries_per_core

    @property
    def bandwidth_bits(self) -> float:
        """Bits per second out of the servers to the clients."""
        return self.deliveries * self.frame_bytes * 8

    @property
    def hosts(self) -> int:
        """Hosts needed for both the memory (at most half of each host's) and the cores
        (at most 70 % busy, to absorb a reconnect storm)."""
        for_memory = self.memory / (self.memory_per_host / 2)
        for_cores = self.cores / (self.cores_per_host * 0.7)
        return max(1, int(-(-max(for_memory, for_cores) // 1)))

    def lines(self) -> list[str]:
        """The envelope, one quantity per line."""
        return [
            f"memory      {self.connections:,} × {self.memory_per_connection / 1024:.1f} KiB "
            f"= {self.memory / 2**30:.1f} GiB",
            f"CPU         {self.deliveries:,.0f} deliveries/s ÷ "
            f"{self.deliveries_per_core:,.0f} per core = {self.cores:.1f} cores",
            f"bandwidth   {self.deliveries:,.0f} × {self.frame_bytes} B × 8 "
            f"= {self.bandwidth_bits / 1e9:.2f} Gbit/s out",
            f"hosts       {self.hosts} of {self.memory_per_host / 2**30:.0f} GiB and "
            f"{self.cores_per_host} cores (memory at most 50 %, CPU at most 70 %)",
        ]
