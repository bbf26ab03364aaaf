"""The options every catalogue server understands.

One frozen dataclass travels from the command line (``course-ws serve``), the
notebook runner (``serve_in_background``) and the tests to the server that
starts. Servers read only the fields they support; the catalogue says which.

Every fact about an option is declared here, once. The string under a field is
its help text (``course-ws serve --help`` shows it), and its annotation says
what the command line accepts: ``Bytes`` takes ``64KiB``, ``Seconds`` takes
``500ms``, ``... | None`` also takes ``off``. A new field becomes a
``course-ws serve`` flag and a ``serve_in_background`` keyword by itself.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Literal, TypeAlias, get_args
from urllib.parse import urlsplit


class Unit(Enum):
    """What a number counts, so that the command line can read ``64KiB`` or ``500ms``."""

    BYTES = "bytes"
    SECONDS = "seconds"


Bytes: TypeAlias = Annotated[int, Unit.BYTES]
"""A size in bytes: ``65536``; the command line also takes ``64KiB``, ``1MiB`` or ``1MB``."""
Seconds: TypeAlias = Annotated[float, Unit.SECONDS]
"""A duration in seconds: ``1.5``; the command line also takes ``500ms``, ``20s`` or ``2m``."""
LogLevel: TypeAlias = Literal["debug", "info", "warning", "error", "critical"]
LOG_LEVELS: tuple[LogLevel, ...] = get_args(LogLevel)
WsImplementation: TypeAlias = Literal["websockets-sansio", "wsproto"]
"""uvicorn's WebSocket implementations that the course's ASGI host serves with."""
WS_IMPLEMENTATIONS: tuple[WsImplementation, ...] = get_args(WsImplementation)
BROKER_SCHEMES = ("memory", "redis")
"""The brokers a chat server can use (:func:`course_ws.chat.brokers.open_broker`)."""
MAX_WORKERS = 64
"""More worker processes than this is a typo, not a deployment (one per core is the rule)."""


BACKLOG = 2048
"""Connections the kernel may queue before a server accepts them (capped by somaxconn).

Every server passes it again when it starts serving: asyncio's ``create_server``
(under ``websockets.serve`` and ``asyncio.start_server``) calls ``listen()`` on a
socket it is given, with its own default of 100, which replaces what was set
when the socket was bound (uvicorn passes its ``backlog``, 2048, itself)."""


def default_database() -> str:
    """Where the ``channels`` server keeps its chat: ``$XDG_DATA_HOME/course-ws/chat.sqlite3``
    (``~/.local/share/course-ws/chat.sqlite3`` when ``XDG_DATA_HOME`` is not set)."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(data_home) / "course-ws" / "chat.sqlite3")


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """How to start a server: where it listens and the limits it enforces."""

    host: str = "127.0.0.1"
    """Address to listen on; ``0.0.0.0`` accepts connections from other machines too."""
    port: int = 0
    """TCP port to listen on; 0 picks a free one."""
    max_size: Bytes = 2**20
    """Largest incoming message in bytes; a bigger one closes the socket with 1009."""
    ping_interval: Seconds | None = 20.0
    """Seconds between keepalive pings; ``None`` (``off`` on the command line): no keepalive."""
    ping_timeout: Seconds | None = 20.0
    """Seconds to wait for the pong before the peer counts as dead (close 1011)."""
    log_level: LogLevel = "warning"
    """Least severe server log lines to keep; ``debug`` is the most talkative."""
    message_rate: float = 10.0
    """Chat messages a client address may send per second, on average, all its connections
    together (reconnecting gains nothing)."""
    message_burst: int = 20
    """Chat messages a client address may send at once before the rate applies."""
    history_size: int = 1000
    """Messages each chat room remembers for clients that resume with ``?since=``."""
    presence_limit: int = 100
    """Rooms with more members than this announce no joins and leaves (see the chat protocol)."""
    send_timeout: Seconds = 10.0
    """Seconds a send to a client that is not reading may wait before it is closed with 1013."""
    close_timeout: Seconds = 5.0
    """Seconds the close handshake may take before the TCP connection is aborted."""
    history_bytes: Bytes = 2**20
    """Bytes of messages each chat room remembers (the count limit applies too)."""
    connect_rate: float = 20.0
    """WebSocket connections a client address may open per second, on average (429 beyond)."""
    connect_burst: int = 100
    """Connections a client address may open at once before the rate applies."""
    max_connections_per_address: int = 256
    """Open WebSocket connections one client address may hold (429 beyond)."""
    idle_rooms: int = 10_000
    """Rooms nobody is in whose history is kept for resuming clients; the least recently
    used is forgotten first."""
    idle_history_bytes: Bytes = 64 * 2**20
    """Bytes of history kept for all those idle rooms together."""
    ws: WsImplementation = "websockets-sansio"
    """uvicorn's WebSocket implementation for the ASGI servers (asgi, starlette, fastapi);
    wsproto needs the wsproto package."""
    trusted_proxy: tuple[str, ...] = ()
    """Address of a reverse proxy whose X-Forwarded-For names the real client (repeatable);
    limits per address then apply to that client, not to the proxy."""
    database: str = default_database()
    """SQLite file where the channels server keeps every chat message, so that a restart
    loses nothing (created with its folder if missing)."""
    broker: str = "memory://"
    """Where the chat keeps ids and history and how events reach other processes:
    ``memory://`` (this process only) or ``redis://HOST:PORT/DB`` (every process sharing
    that Redis; it must answer at start)."""
    workers: int = 1
    """Processes serving the same port, under a supervisor that restarts a worker that dies;
    SIGTERM closes every client with 1001, SIGHUP restarts the workers one at a time. With
    more than one, rooms are shared only through ``--broker redis://...``."""

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        if self.max_size < 1:
            raise ValueError(f"max_size must be at least 1 byte, got {self.max_size}")
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"log_level must be one of {', '.join(LOG_LEVELS)}")
        if self.message_rate <= 0 or self.message_burst < 1:
            raise ValueError("message_rate must be positive and message_burst at least 1")
        if self.presence_limit < 0:
            raise ValueError(f"presence_limit must be 0 or more, got {self.presence_limit}")
        if self.history_size < 1:
            raise ValueError(f"history_size must be at least 1, got {self.history_size}")
        for name in ("ping_interval", "ping_timeout"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, got {value}")
        if self.history_bytes < 1:
            raise ValueError(f"history_bytes must be at least 1, got {self.history_bytes}")
        if self.connect_rate <= 0 or self.connect_burst < 1:
            raise ValueError("connect_rate must be positive and connect_burst at least 1")
        if self.idle_rooms < 0 or self.idle_history_bytes < 0:
            raise ValueError("idle_rooms and idle_history_bytes must be 0 or more")
        if self.max_connections_per_address < 1:
            raise ValueError("max_connections_per_address must be at least 1")
        for name in ("send_timeout", "close_timeout"):
            value = getattr(self, name)
            if not value > 0:  # also refuses NaN
                raise ValueError(f"{name} must be a positive number of seconds, got {value}")
        self._check_broker()
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be 1..{MAX_WORKERS}, got {self.workers}")

    def _check_broker(self) -> None:
        if not isinstance(self.broker, str):
            raise ValueError(f"broker must be a URL such as memory://, got {self.broker!r}")
        try:
            broker = urlsplit(self.broker)
            broker.port  # noqa: B018 - reading it checks it
        except ValueError as exc:
            raise ValueError(f"broker {self.broker!r} is not a URL: {exc}") from None
        if broker.scheme not in BROKER_SCHEMES:
            known = ", ".join(f"{scheme}://" for scheme in BROKER_SCHEMES)
            raise ValueError(f"broker must be one of {known}, got {self.broker!r}")
        database = broker.path.strip("/")
        if broker.scheme == "redis" and database and not database.isdigit():
            raise ValueError(f"broker: a Redis database is a number (/0), got {self.broker!r}")
