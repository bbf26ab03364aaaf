"""The options every catalogue server understands.

One frozen dataclass travels from the command line (``course-ws serve``), the
notebook runner (``serve_in_background``) and the tests to the server that
starts. Servers read only the fields they support; the catalogue says which.
"""

from __future__ import annotations

from dataclasses import dataclass

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@dataclass(frozen=True, kw_only=True)
class ServeOptions:
    """How to start a server: where it listens and the limits it enforces."""

    host: str = "127.0.0.1"
    port: int = 0
    max_size: int = 2**20
    """Largest incoming message in bytes; a bigger one closes the socket with 1009."""
    ping_interval: float | None = 20.0
    """Seconds between keepalive pings; ``None`` turns keepalive off."""
    ping_timeout: float | None = 20.0
    """Seconds to wait for the pong before the peer counts as dead (close 1011)."""
    log_level: str = "warning"
    message_rate: float = 10.0
    """Chat messages a connection may send per second, on average."""
    message_burst: int = 20
    """Chat messages a connection may send at once before the rate applies."""
    history_size: int = 1000
    """Messages each chat room remembers for clients that resume with ``?since=``."""
    presence_limit: int = 100
    """Rooms with more members than this announce no joins and leaves (see the chat protocol)."""

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
