"""What every server reports at ``GET /metrics``, in Prometheus text format.

Every server and every test reads the same names, so a leak shows the same way
on every stack: after everyone has left, the gauges of connections, rooms,
members and subscriptions are back to 0.

Gauges that describe state (rooms, members, history) are read from that state
when scraped (``set_function``), never counted up and down by hand, so they
cannot drift from the truth.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import generate_latest

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    """The metrics of one server, in a registry of its own (several servers share a process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.connections = Gauge(
            "course_ws_connections", "Open WebSocket connections", registry=self.registry
        )
        self.messages_published = Counter(
            "course_ws_messages_published",
            "Chat messages published in this process, by members and by HTTP POST",
            registry=self.registry,
        )
        self.members_dropped = Counter(
            "course_ws_members_dropped",
            "Connections the server closed on its own initiative, by close code",
            ["code"],
            registry=self.registry,
        )
        self.handshake_refusals = Counter(
            "course_ws_handshake_refusals",
            "Opening handshakes refused with an HTTP response, by status",
            ["status"],
            registry=self.registry,
        )

        self.posts_refused = Counter(
            "course_ws_posts_refused",
            "Messages posted over HTTP and refused, by status",
            ["status"],
            registry=self.registry,
        )

    def gauge(self, name: str, documentation: str, read: Callable[[], float]) -> None:
        """A gauge whose value is read from live state at each scrape."""
        Gauge(name, documentation, registry=self.registry).set_function(read)

    def refused(self, status: int) -> None:
        """Count a handshake refused with ``status``."""
        self.handshake_refusals.labels(status=str(status)).inc()

    def dropped(self, code: int) -> None:
        """Count a connection the server closed with ``code`` (1009, 1011, 1013, ...)."""
        self.members_dropped.labels(code=str(code)).inc()

    def render(self) -> bytes:
        """The text a Prometheus scrape of ``GET /metrics`` receives."""
        return generate_latest(self.registry)


def read_metrics(text: str) -> dict[str, float]:
    """Samples of a ``/metrics`` page by name (labels included): for tests and notebooks."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples
