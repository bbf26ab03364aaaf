"""Brokers: a store (ids, bounded history, replay) and a bus (subscribe, deliver), by URL.

``open_broker("memory://")`` is the default and needs nothing installed;
chapter 06 adds ``redis://HOST:PORT/DB``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from course_ws.chat.brokers.base import Broker, Bus, Delivery, Store, Subscription
from course_ws.chat.brokers.memory import MAX_IDLE_BYTES, MAX_IDLE_ROOMS, MemoryBus, MemoryStore
from course_ws.chat.history import DEFAULT_HISTORY, DEFAULT_HISTORY_BYTES
from course_ws.options import ServeOptions

SCHEMES = ("memory",)

__all__ = ["Broker", "Bus", "Delivery", "Store", "Subscription", "open_broker", "open_broker_for"]


def open_broker(
    url: str = "memory://",
    *,
    history_size: int = DEFAULT_HISTORY,
    history_bytes: int = DEFAULT_HISTORY_BYTES,
    idle_rooms: int = MAX_IDLE_ROOMS,
    idle_history_bytes: int = MAX_IDLE_BYTES,
) -> Broker:
    """The broker at ``url``; :class:`ValueError` names the schemes understood."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        store = MemoryStore(history_size, history_bytes, idle_rooms, idle_history_bytes)
        return Broker(store, MemoryBus())
    raise ValueError(f"unknown broker {url!r}: use one of {', '.join(s + '://' for s in SCHEMES)}")


def open_broker_for(options: ServeOptions) -> Broker:
    """The broker a server started with ``options`` uses, with its history limits."""
    return open_broker(
        history_size=options.history_size,
        history_bytes=options.history_bytes,
        idle_rooms=options.idle_rooms,
        idle_history_bytes=options.idle_history_bytes,
    )
