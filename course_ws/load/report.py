"""What a load run found, as a readable report and as JSON for plots.

Losses are counted by id. A room's ids are consecutive (the store counts them
one by one), and every member joined before the first message, so a member
connected throughout should have received every id from its welcome's
``last_id`` + 1 to the highest id anyone in the room received: each missing
one is *lost*, each one received twice *duplicated*. A message that reached
nobody at all is invisible to that count, which is why senders also check
that each of their own messages came back to them (*unanswered* otherwise).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from course_ws.hosting.open_files import OpenFilesLimit
from course_ws.lab.fanout import latency_percentile
from course_ws.load.members import MemberTally, ProcessResult
from course_ws.load.plan import LoadPlan
from course_ws.load.system import SERVER_LIMIT_HINT

PERCENTILES = (50, 95, 99)
PER_ADDRESS_HINT = (
    "the server limits each client address (429 at the handshake, rate_limited after): "
    "use more --addresses, or start it with higher --connect-rate, --connect-burst, "
    "--max-connections-per-address and --message-rate (course-ws serve --help)"
)


def percentiles(values: list[float], ranks: tuple[int, ...] = PERCENTILES) -> dict[str, float]:
    """``{"p50": ..., "p95": ..., "p99": ...}`` in milliseconds (NaN when there are no values)."""
    return {f"p{rank}": latency_percentile(values, rank, len(values)) * 1000 for rank in ranks}


def quantiles(values: list[float]) -> list[float]:
    """The 0th, 1st, ... 100th percentiles in milliseconds: a whole distribution in 101 numbers,
    enough to plot its CDF."""
    return [latency_percentile(values, rank, len(values)) * 1000 for rank in range(101)]


@dataclass(frozen=True)
class ServerMemory:
    """The server's resident memory before the clients connected and once they all had."""

    source: str
    """Where it was read: ``/proc`` of the given PIDs, ``/metrics``, or why it is unknown."""
    pids: list[int] = field(default_factory=list)
    before: int | None = None
    after: int | None = None
    connections: int = 0
    metrics_connections: float | None = None
    """``course_ws_connections`` from the server's ``/metrics`` once everyone connected."""

    @property
    def per_connection(self) -> float | None:
        """Bytes of server memory per connection (``None`` when unknown)."""
        if self.before is None or self.after is None or not self.connections:
            return None
        return (self.after - self.before) / self.connections

    def __str__(self) -> str:
        if self.per_connection is None:
            return self.source
        where = f"pid {', '.join(map(str, self.pids))}" if self.pids else self.source
        return (
            f"RSS {self.before / 2**20:.1f} -> {self.after / 2**20:.1f} MiB "  # type: ignore[operator]
            f"with {self.connections:,} connections: "
            f"{self.per_connection / 1024:.1f} KiB per connection ({where})"
        )


@dataclass
class LoadReport:
    """Everything a load run measured; ``str()`` is the text report, :meth:`to_json` the data."""

    plan: LoadPlan
    tag: str
    addresses: list[str]
    open_files: OpenFilesLimit
    server: ServerMemory
    server_open_files: int | None
    elapsed: float
    results: list[ProcessResult] = field(repr=False)

    # -- what the processes saw, together -------------------------------------

    @property
    def connect_times(self) -> list[float]:
        return [t for result in self.results for t in result.connect_times]

    @property
    def connected(self) -> int:
        return len(self.connect_times)

    @property
    def connect_failures(self) -> dict[str, int]:
        return dict(sum((result.connect_failures for result in self.results), Counter()))

    @property
    def latencies(self) -> list[float]:
        """Delivery latencies in seconds (a uniform sample of them in a very large run)."""
        return [t for result in self.results for t in result.latencies]

    @property
    def members(self) -> list[MemberTally]:
        return [member for result in self.results for member in result.members]

    @property
    def sent(self) -> int:
        return sum(result.sent for result in self.results)

    @property
    def refused(self) -> dict[str, int]:
        """Messages the server answered with an ``error`` event, by code."""
        return dict(sum((result.refused for result in self.results), Counter()))

    @property
    def unanswered(self) -> int:
        """Messages that came back neither to their sender nor as a refusal."""
        echoed = sum(result.echoed for result in self.results)
        return max(0, self.sent - echoed - sum(self.refused.values()))

    @property
    def delivered(self) -> int:
        """Deliveries of the run's own messages, to every member that received them."""
        return sum(result.timed for result in self.results)

    def _rooms(self) -> dict[str, tuple[int, int]]:
        """Each room's lowest welcome ``last_id`` and highest id received by anyone."""
        rooms: dict[str, tuple[int, int]] = {}
        for member in self.members:
            base, top = rooms.get(member.room, (member.base_id, 0))
            rooms[member.room] = (min(base, member.base_id), max(top, member.top_id))
        return rooms

    @property
    def accepted(self) -> int:
        """Ids the server gave out in the run's rooms (all members together saw them)."""
        return sum(max(0, top - base) for base, top in self._rooms().values())

    def _throughout(self) -> list[MemberTally]:
        return [member for member in self.members if member.close_code is None]

    @property
    def expected(self) -> int:
        """Deliveries owed to members connected throughout: every id of their room."""
        rooms = self._rooms()
        return sum(max(0, rooms[m.room][1] - m.base_id) for m in self._throughout())

    @property
    def lost(self) -> int:
        """(member, id) pairs owed to a member connected throughout and never received."""
        rooms = self._rooms()
        return sum(max(0, rooms[m.room][1] - m.base_id - m.distinct) for m in self._throughout())

    @property
    def duplicated(self) -> int:
        """Ids received a second (or third...) time by the same member."""
        return sum(member.duplicates for member in self.members)

    @property
    def close_codes(self) -> dict[int, int]:
        """Close codes of the connections that ended before the run did."""
        codes = Counter(m.close_code for m in self.members if m.close_code is not None)
        return dict(sorted(codes.items()))

    # -- output ----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The figures as plain data (times in milliseconds, memory in bytes)."""
        return {
            "plan": asdict(self.plan),
            "tag": self.tag,
            "source_addresses": self.addresses,
            "elapsed_s": self.elapsed,
            "open_files": asdict(self.open_files),
            "connections": {
                "attempted": self.plan.clients,
                "connected": self.connected,
                "failed": self.connect_failures,
                "connect_ms": percentiles(self.connect_times),
                "connect_ms_quantiles": quantiles(self.connect_times),
            },
            "messages": {
                "sent": self.sent,
                "accepted": self.accepted,
                "refused": self.refused,
                "unanswered": self.unanswered,
                "delivered": self.delivered,
                "expected": self.expected,
                "lost": self.lost,
                "duplicated": self.duplicated,
            },
            "latency_ms": percentiles(self.latencies),
            "latency_ms_quantiles": quantiles(self.latencies),
            "close_codes": {str(code): count for code, count in self.close_codes.items()},
            "server": {
                **asdict(self.server),
                "per_connection_bytes": self.server.per_connection,
                "open_files_soft_limit": self.server_open_files,
            },
        }

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON (NaN, for an empty measurement, becomes ``null``)."""
        return json.dumps(_no_nan(self.to_dict()), indent=2)

    def __str__(self) -> str:
        plan = self.plan
        addresses = (
            f"{len(self.addresses)} source address{'es' if len(self.addresses) > 1 else ''} "
            f"({self.addresses[0]}-{self.addresses[-1]})"
            if self.addresses
            else "source address ::1"
        )
        failures = ", ".join(f"{n} {why}" for why, n in self.connect_failures.items()) or "none"
        refused = ", ".join(f"{n} {code}" for code, n in self.refused.items()) or "0"
        codes = ", ".join(f"{code} x{n}" for code, n in self.close_codes.items())
        lines = [
            f"course-ws load {plan.url}: {plan.clients:,} clients in {plan.rooms:,} rooms "
            f"from {plan.processes} processes and {addresses}; "
            f"{plan.rate:g} msg/s for {plan.duration:g} s ({self.elapsed:.1f} s in all)",
            str(self.open_files),
            "",
            f"connections  {self.connected:,} opened, failed: {failures}",
            f"connect time {_ms(percentiles(self.connect_times))}",
            f"messages     {self.sent:,} sent, {self.accepted:,} accepted (ids), "
            f"refused {refused}, unanswered {self.unanswered:,}",
            f"deliveries   {self.delivered:,} of {self.expected:,} owed; "
            f"lost {self.lost:,}, duplicated {self.duplicated:,}",
            f"latency      {_ms(percentiles(self.latencies))} (send to receipt, one clock)",
            f"close codes  {codes or 'none: every connection lasted the whole run'}",
            f"server       {self.server}",
        ]
        if self.server_open_files is not None and self.server_open_files < plan.clients + 64:
            lines.append(
                f"warning      the server may open only {self.server_open_files:,} files "
                f"for {plan.clients:,} clients"
            )
        if "HTTP 429" in self.connect_failures or "rate_limited" in self.refused:
            lines.append(f"note         {PER_ADDRESS_HINT}")
        lines.append(f"note         {SERVER_LIMIT_HINT}")
        return "\n".join(lines)


def _ms(values: dict[str, float]) -> str:
    if any(math.isnan(value) for value in values.values()):
        return "no measurement"
    return ", ".join(f"{rank} {value:.1f} ms" for rank, value in values.items())


def _no_nan(data: Any) -> Any:
    """``data`` with every NaN float replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(data, dict):
        return {key: _no_nan(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_no_nan(value) for value in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data
