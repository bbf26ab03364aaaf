"""What a load run will do, checked before anything connects: target, sizes, caps.

A load generator is a tool that can hurt: pointed at someone else's server it
is an attack, and unbounded it can fill a machine. This one refuses both. It
targets only this machine (127.0.0.0/8, ``localhost`` or ``::1``), and every
quantity has a cap, so that a run always ends: at most :data:`MAX_CLIENTS`
clients, :data:`MAX_DURATION` seconds of sending, :data:`MAX_RATE` messages
per second, and fixed deadlines for connecting and for the last deliveries.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_CLIENTS = 20_000
"""The most clients a run opens: twice the 10,000 connections chapter 06 holds through nginx."""
MAX_DURATION = 300.0
"""The longest a run sends, in seconds."""
MAX_RATE = 5_000.0
"""The most messages per second a run sends, all senders together."""
MAX_PROCESSES = 16
"""The most client processes a run starts."""
MAX_SOURCE_ADDRESSES = 250
"""Source addresses 127.0.0.2 ... 127.0.0.251 at most."""
CLIENTS_PER_ADDRESS = 100
"""Default share of one source address: the servers' default ``connect_burst``."""
MAX_CONNECT_TIMEOUT = 300.0
"""The longest the connect phase may take, in seconds."""


def loopback_base(url: str) -> str:
    """``url`` (``ws://127.0.0.1:8000``, optionally with a path prefix) without its trailing ``/``.

    :class:`ValueError` if it is not a ``ws://`` URL of this machine: an IP
    address in 127.0.0.0/8 or ``::1``, or ``localhost`` (read as 127.0.0.1).
    Names are not resolved: what a name points to can change, an address cannot.
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - reading it checks it
    except ValueError as exc:
        raise ValueError(f"{url!r} is not a URL: {exc}") from None
    if parts.scheme != "ws":
        raise ValueError(f"{url!r}: the load generator speaks ws:// (plain WebSocket) only")
    host = parts.hostname or ""
    if host == "localhost":
        parts = parts._replace(netloc=parts.netloc.replace("localhost", "127.0.0.1", 1))
    else:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(
                f"{host or url!r} is not a loopback address: the load generator only targets "
                f"this machine (127.0.0.0/8, localhost, ::1)"
            )
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r}: give the server's base URL, without a query")
    return parts.geturl().rstrip("/")


def source_addresses(count: int) -> list[str]:
    """``127.0.0.2``, ``127.0.0.3``, ...: ``count`` loopback addresses to connect from.

    Linux routes all of 127.0.0.0/8 to the loopback interface, so each is an
    address of this machine that needs no setup. A TCP connection is named by
    (source address, source port, destination address, destination port), and
    a socket bound to a source address before connecting picks a free port of
    that address: about 28,000 ephemeral ports (``net.ipv4.ip_local_port_range``)
    per source address instead of per machine. The server also sees several
    client addresses, as it would with real users.
    """
    return [str(ipaddress.IPv4Address("127.0.0.2") + index) for index in range(count)]


@dataclass(frozen=True)
class LoadPlan:
    """A load run: ``clients`` chat members over ``rooms`` rooms of the server at ``url``,
    saying ``rate`` messages per second together for ``duration`` seconds, from
    ``processes`` client processes and ``addresses`` source addresses (``None``:
    one per :data:`CLIENTS_PER_ADDRESS` clients, at least two; IPv6 ``::1`` has
    only itself). :class:`ValueError` says what is out of bounds."""

    url: str
    clients: int = 100
    rooms: int = 10
    rate: float = 50.0
    duration: float = 5.0
    processes: int = 2
    addresses: int | None = None
    connect_timeout: float = 60.0
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "url", loopback_base(self.url))
        _check_range("clients", self.clients, 1, MAX_CLIENTS)
        _check_range("rooms", self.rooms, 1, self.clients)
        _check_range("rate", self.rate, 0, MAX_RATE)
        _check_range("duration", self.duration, 0.1, MAX_DURATION)
        _check_range("processes", self.processes, 1, min(MAX_PROCESSES, self.clients))
        _check_range("connect_timeout", self.connect_timeout, 1, MAX_CONNECT_TIMEOUT)
        if self.addresses is not None:
            _check_range("addresses", self.addresses, 1, MAX_SOURCE_ADDRESSES)

    @property
    def ipv6(self) -> bool:
        """Whether the server is reached over IPv6 (``::1``: one source address only)."""
        return urlsplit(self.url).hostname == "::1"

    def source_addresses(self) -> list[str]:
        """The addresses clients bind to before connecting (none over IPv6)."""
        if self.ipv6:
            return []
        count = self.addresses or max(2, math.ceil(self.clients / CLIENTS_PER_ADDRESS))
        return source_addresses(min(count, MAX_SOURCE_ADDRESSES))

    def room(self, client: int, tag: str) -> str:
        """The room of client number ``client``; ``tag`` keeps each run's rooms apart."""
        return f"load-{tag}-{client % self.rooms}"

    @property
    def planned_messages(self) -> int:
        """How many messages the senders mean to say."""
        return round(self.rate * self.duration)


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:  # also refuses NaN
        flag = name.replace("_", "-")
        raise ValueError(f"--{flag} must be between {low:g} and {high:g}, got {value:g}")
