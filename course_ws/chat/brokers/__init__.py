"""Brokers: a store (ids, bounded history, replay) and a bus (subscribe, deliver), by URL.

``open_broker("memory://")`` is the default and needs nothing installed: one
process, nothing shared. ``open_broker("redis://HOST:PORT/DB")`` (chapter 06)
keeps the store in Redis and uses its pub/sub as the bus, so that several
processes serve the same rooms (:mod:`course_ws.chat.brokers.redis`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from course_ws.chat.brokers.base import Broker, Bus, Delivery, Resume, Store, Subscription
from course_ws.chat.brokers.memory import MAX_IDLE_BYTES, MAX_IDLE_ROOMS, MemoryBus, MemoryStore
from course_ws.chat.history import DEFAULT_HISTORY, DEFAULT_HISTORY_BYTES
from course_ws.options import BROKER_SCHEMES, ServeOptions

__all__ = [
    "Broker",
    "BrokerUnavailable",
    "Bus",
    "Delivery",
    "Resume",
    "Store",
    "Subscription",
    "open_broker",
    "open_broker_for",
]


class BrokerUnavailable(ConnectionError):
    """The broker cannot be reached: nothing was stored or sent; try again later.

    Its message is one line naming the broker (without any password).
    """


def open_broker(
    url: str = "memory://",
    *,
    history_size: int = DEFAULT_HISTORY,
    history_bytes: int = DEFAULT_HISTORY_BYTES,
    idle_rooms: int = MAX_IDLE_ROOMS,
    idle_history_bytes: int = MAX_IDLE_BYTES,
) -> Broker:
    """The broker at ``url``; :class:`ValueError` names the schemes understood.

    ``redis://`` checks that Redis answers (blocking, two seconds at most) and
    raises :class:`BrokerUnavailable` if not. ``idle_rooms`` and
    ``idle_history_bytes`` cap a memory store; a Redis store expires idle rooms
    instead, and Redis's ``maxmemory`` bounds it as a whole.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        store = MemoryStore(history_size, history_bytes, idle_rooms, idle_history_bytes)
        return Broker(store, MemoryBus())
    if scheme == "redis":
        from course_ws.chat.brokers.redis import open_redis_broker  # imports redis-py

        return open_redis_broker(url, history_size=history_size, history_bytes=history_bytes)
    known = ", ".join(f"{name}://" for name in BROKER_SCHEMES)
    raise ValueError(f"unknown broker {url!r}: use one of {known}")


def open_broker_for(options: ServeOptions) -> Broker:
    """The broker a server started with ``options`` uses (``--broker``), with its history limits."""
    return open_broker(
        options.broker,
        history_size=options.history_size,
        history_bytes=options.history_bytes,
        idle_rooms=options.idle_rooms,
        idle_history_bytes=options.idle_history_bytes,
    )
