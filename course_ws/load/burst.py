"""A burst of reconnects after a server restart, measured: connection attempts over time.

When a server restarts, all its clients lose it at the same instant. If they
all wait the same delays before retrying, they come back together, at every
retry: a *thundering herd* of handshakes that the new server must take at
once. Jitter (a random part in each delay) spreads them out.

:func:`measure_reconnect_burst` shows it with the course's own reconnecting
client (:func:`~course_ws.clients.keep_connected` and
:class:`~course_ws.clients.Backoff`): ``clients`` members of one room, the
server stopped (they get 1001) and started again on the same port
``down_for`` seconds later, every connection attempt timed. One run per
jitter setting, each with a fresh server.

One detail matters: ``async for websocket in connect(url)``, which
``keep_connected`` builds on, reconnects *at once* when a connection that had
opened is lost (it starts backing off only after an attempt fails). After a
restart that first attempt is synchronized whatever the jitter. RFC 6455
§7.2.3 asks for the first reconnect to be delayed by a random amount, so the
clients here wait one delay of their backoff, jittered like the rest, before
that first attempt (``delay_first=False`` shows websockets' behaviour instead).
"""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from course_ws.bench import ONE_ADDRESS_CROWD
from course_ws.clients.backoff import Backoff
from course_ws.clients.chat import chat_url
from course_ws.clients.reconnecting import ConnectionEvent, keep_connected
from course_ws.clients.waiting import wait_until
from course_ws.hosting.background import BackgroundServer, serve_in_background

WINDOW = 0.1
"""Seconds over which attempts are counted together: the peak is per 100 ms."""
ROOMS = 10
"""Rooms the clients spread over, so that joins do not fan out to every client."""


@dataclass
class BurstSeries:
    """The connection attempts of one run, in seconds after the server began to stop."""

    label: str
    clients: int
    backoff: Backoff
    delay_first: bool
    restarted_at: float
    """When the new server was listening."""
    attempts: list[float] = field(default_factory=list)
    """Every attempt that ended, failed (refused: the server was down) or connected."""
    connected: list[float] = field(default_factory=list)
    window: float = WINDOW

    def peak(self) -> int:
        """The most attempts within any ``window`` seconds (a sliding window)."""
        return _peak(self.attempts, self.window)

    def peak_connections(self) -> int:
        """The most handshakes the restarted server completed within any ``window`` seconds."""
        return _peak(self.connected, self.window)

    def rate(self) -> list[tuple[float, float]]:
        """(start of each ``window``, attempts per second in it): the series to plot."""
        if not self.attempts:
            return []
        buckets = [0] * (int(max(self.attempts) / self.window) + 1)
        for at in self.attempts:
            buckets[int(at / self.window)] += 1
        return [
            (round(index * self.window, 6), count / self.window)
            for index, count in enumerate(buckets)
        ]

    @property
    def all_back(self) -> float:
        """Seconds until the last client was connected again."""
        return max(self.connected, default=float("nan"))

    def to_dict(self) -> dict[str, Any]:
        backoff = asdict(self.backoff)
        backoff.pop("rng")
        return {
            "label": self.label,
            "clients": self.clients,
            "backoff": backoff,
            "delay_first": self.delay_first,
            "restarted_at": self.restarted_at,
            "window_s": self.window,
            "peak_attempts_per_window": self.peak(),
            "peak_attempts_per_s": self.peak() / self.window,
            "peak_connections_per_window": self.peak_connections(),
            "all_back_s": self.all_back,
            "attempts_s": sorted(self.attempts),
            "connected_s": sorted(self.connected),
            "attempts_per_s": self.rate(),
        }


@dataclass
class BurstReport:
    """One :class:`BurstSeries` per jitter setting; ``str()`` compares them."""

    server: str
    down_for: float
    series: list[BurstSeries]

    def __str__(self) -> str:
        window = f"{self.series[0].window * 1000:.0f} ms"
        lines = [
            f"{self.series[0].clients} clients of {self.server}; the server stopped at 0 s "
            f"and listened again {self.down_for:g} s later",
            f"{'':<12}  attempts  peak per {window}  handshakes per {window}  all back",
        ]
        for s in self.series:
            lines.append(
                f"{s.label:<12}  {len(s.attempts):8}  {s.peak():15}  "
                f"{s.peak_connections():19}  {s.all_back:6.2f} s"
            )
        return "\n".join(lines)

    def to_json(self) -> str:
        """The series as JSON, for a plot of attempts per second over time."""
        data = {
            "server": self.server,
            "down_for": self.down_for,
            "series": [s.to_dict() for s in self.series],
        }
        return json.dumps(data, indent=2)


def _peak(times: list[float], window: float) -> int:
    """The most of ``times`` that fall within any ``window`` seconds."""
    ordered = sorted(times)
    most, low = 0, 0
    for high, now in enumerate(ordered):
        while now - ordered[low] >= window:
            low += 1
        most = max(most, high - low + 1)
    return most


def _label(jitter: float) -> str:
    return {0.0: "no jitter", 1.0: "full jitter"}.get(jitter, f"jitter {jitter:g}")


async def _restart(server: BackgroundServer, name: str, down_for: float) -> BackgroundServer:
    """Stop ``server`` (clients get 1001), wait, and serve ``name`` again on the same port."""
    loop = asyncio.get_running_loop()
    stopped = loop.time()
    await asyncio.to_thread(server.stop)
    await asyncio.sleep(max(0.0, down_for - (loop.time() - stopped)))
    return await asyncio.to_thread(serve_in_background, name, port=server.port, **ONE_ADDRESS_CROWD)


async def _one_run(
    name: str, clients: int, backoff: Backoff, delay_first: bool, down_for: float, within: float
) -> BurstSeries:
    loop = asyncio.get_running_loop()
    server = await asyncio.to_thread(serve_in_background, name, **ONE_ADDRESS_CROWD)
    series = BurstSeries(_label(backoff.jitter), clients, backoff, delay_first, float("nan"))
    origin: float | None = None
    up = 0

    def on_event(event: ConnectionEvent) -> None:
        if origin is not None and event.kind in ("connected", "failed"):
            series.attempts.append(loop.time() - origin)
            if event.kind == "connected":
                series.connected.append(loop.time() - origin)

    async def session(websocket: ClientConnection) -> None:
        nonlocal up
        up += 1
        try:  # read what comes (joins...): a client that stops reading never sees the close
            async for _ in websocket:
                pass
        except ConnectionClosed:
            pass  # lost rather than closed: reconnect all the same
        finally:
            up -= 1
        if delay_first:  # RFC 6455 §7.2.3: the first reconnect, too, after a random delay
            await asyncio.sleep(next(backoff()))

    tasks = [
        asyncio.create_task(
            keep_connected(
                chat_url(server.url, f"burst-{n % ROOMS}"),
                session,
                reconnect_delays=backoff,
                on_event=on_event,
                ping_interval=None,
            )
        )
        for n in range(clients)
    ]
    try:
        await wait_until(lambda: up == clients, within=within, what="every client connected")
        origin = loop.time()
        server = await _restart(server, name, down_for)
        series.restarted_at = loop.time() - origin
        await wait_until(lambda: up == clients, within=within, what="every client back")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(server.stop)
    return series


async def measure_reconnect_burst(
    server: str = "chat",
    *,
    clients: int = 100,
    jitters: tuple[float, ...] = (0.0, 1.0),
    first: float = 0.5,
    factor: float = 2.0,
    cap: float = 4.0,
    down_for: float = 1.0,
    delay_first: bool = True,
    within: float = 30.0,
    seed: int | None = None,
) -> BurstReport:
    """Restart ``server`` (a catalogue name) under ``clients`` reconnecting clients, once per
    jitter setting, and time every connection attempt. ``await`` it (notebook, test).

    The clients back off ``first``, ``first * factor``, ... up to ``cap`` seconds,
    each delay cut by up to ``jitter`` of itself at random (:class:`Backoff`);
    ``within`` bounds each wait for all of them to be connected.
    """
    if not 1 <= clients <= 2_000:
        raise ValueError(f"clients must be between 1 and 2000, got {clients}")
    rng = random.Random(seed)
    series = [
        await _one_run(
            server,
            clients,
            Backoff(first=first, factor=factor, cap=cap, jitter=jitter, rng=rng),
            delay_first,
            down_for,
            within,
        )
        for jitter in jitters
    ]
    return BurstReport(server, down_for, series)
