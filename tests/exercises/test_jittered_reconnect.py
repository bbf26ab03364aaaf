"""Checks for exercise ``jittered_reconnect`` (exercises/06_scaling/jittered_reconnect.py).

The delays are checked by their statistics over thousands of sequences, each drawn
from its own seeded ``random.Random``: bounds, the random first delay, the growing
ceiling, the cap, the spread. The wrapper is checked live, over real sockets on
127.0.0.1: a server (:func:`course_ws.serve_in_background`) that closes every
client's first connection must see each come back after that client's own first
delay; and a server stopped and started again on the same port, with many
clients, must see their reconnections spread out in time, not in one burst.
Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import statistics
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator
from functools import partial
from itertools import islice
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from course_ws import serve_in_background
from course_ws.clients import wait_until

SEQUENCES = 2000
"""Sequences drawn for each statistic: the mean of 2000 uniform draws is within ±4 % of its
expectation with odds far beyond a billion to one."""
FIRST, BASE, FACTOR, CAP = 2.0, 0.1, 2.0, 3.0
TIMEOUT = 5.0
Delays = Callable[..., Generator[float]]


def draws(jittered_delays: Delays, position: int, **options: Any) -> list[float]:
    """Delay number ``position`` (0: the first) of ``SEQUENCES`` sequences, each seeded apart."""
    options = {"first": FIRST, "base": BASE, "factor": FACTOR, "cap": CAP} | options
    values = []
    for seed in range(SEQUENCES):
        sequence = jittered_delays(**options, rng=random.Random(seed))
        values.append(next(islice(sequence, position, None)))
    return values


def describe(values: list[float]) -> str:
    return f"min {min(values):.3f}, mean {statistics.fmean(values):.3f}, max {max(values):.3f}"


def assert_uniform(values: list[float], ceiling: float, what: str) -> None:
    """``values`` look drawn uniformly from [0, ceiling]: bounds, mean, both ends reached."""
    assert all(0 <= value <= ceiling + 1e-9 for value in values), (
        f"{what}: expected every value between 0 and {ceiling:g} s, got {describe(values)}"
    )
    mean = statistics.fmean(values)
    assert abs(mean - ceiling / 2) <= 0.05 * ceiling, (
        f"{what}: expected values spread evenly over 0..{ceiling:g} s (mean near "
        f"{ceiling / 2:g}), got {describe(values)}"
    )
    assert min(values) < 0.05 * ceiling, (
        f"{what}: expected values down to near 0, got {describe(values)}"
    )
    assert max(values) > 0.95 * ceiling, (
        f"{what}: expected values up to near {ceiling:g} s, got {describe(values)}"
    )


def test_the_first_delay_is_random_up_to_first(load):
    """The first delay is random, anywhere between 0 and first (RFC 6455, section 7.2.3)"""
    values = draws(load("jittered_reconnect").jittered_delays, 0)
    if len(set(values)) == 1:
        pytest.fail(
            f"the first delay was {values[0]:g} s in all {SEQUENCES} sequences: "
            "draw it at random, rng.uniform(0, first)"
        )
    assert_uniform(values, FIRST, f"first delay (first={FIRST:g})")


def test_later_delays_have_full_jitter_under_a_growing_ceiling(load):
    """Later delays: full jitter under a ceiling from base, times factor each time, up to cap"""
    jittered_delays = load("jittered_reconnect").jittered_delays
    for position in range(1, 7):
        ceiling = min(CAP, BASE * FACTOR ** (position - 1))
        what = f"delay #{position + 1} (base={BASE:g}, factor={FACTOR:g}, cap={CAP:g})"
        values = draws(jittered_delays, position)
        if len(set(values)) == 1:
            pytest.fail(
                f"{what} was {values[0]:g} s in all {SEQUENCES} sequences: no jitter, so "
                f"clients that lost the server together retry together; draw "
                f"rng.uniform(0, {ceiling:g})"
            )
        assert_uniform(values, ceiling, what)


def test_the_ceiling_stops_at_cap(load):
    """Far into the sequence the ceiling stays at cap: delays never exceed it, and reach it"""
    jittered_delays = load("jittered_reconnect").jittered_delays
    for position in (10, 40):
        values = draws(jittered_delays, position)
        assert_uniform(values, CAP, f"delay #{position + 1} (cap={CAP:g})")
    values = draws(jittered_delays, 5, cap=0.25)
    assert_uniform(values, 0.25, "delay #6 with cap=0.25, below its uncapped ceiling")


def test_draws_from_the_given_rng_only(load):
    """Every delay comes from rng: the same seed gives the same delays, another seed others"""
    jittered_delays = load("jittered_reconnect").jittered_delays
    state = random.getstate()

    def take(seed: int) -> list[float]:
        return list(islice(jittered_delays(rng=random.Random(seed)), 8))

    assert take(1) == take(1), "two sequences seeded alike differ: draw from rng, nothing else"
    assert take(1) != take(2), (
        f"sequences seeded 1 and 2 are identical ({take(1)[:3]}…): draw the delays from rng"
    )
    assert random.getstate() == state, (
        "the global random module was used: draw from rng (a random.Random) instead"
    )


# -- live: a real server, real clients --------------------------------------------------


class Arrivals:
    """A server's handler recording when each client (``/?client=N``) connected."""

    def __init__(self, *, close_first: bool = False) -> None:
        self.close_first = close_first
        self.times: dict[int, list[float]] = {}
        self.lock = threading.Lock()
        self.release = threading.Event()

    async def handler(self, websocket: ServerConnection) -> None:
        client = int(websocket.request.path.partition("client=")[2] or -1)
        with self.lock:
            times = self.times.setdefault(client, [])
            times.append(time.monotonic())
            first = len(times) == 1
        if first and self.close_first:
            await asyncio.to_thread(self.release.wait, TIMEOUT)  # set by the check's thread
            await websocket.close(1001, "going away")  # every client loses it together
            return
        with contextlib.suppress(ConnectionClosed):
            await websocket.wait_closed()

    def connected(self, count: int, minimum: int = 1) -> bool:
        with self.lock:
            return sum(len(times) >= minimum for times in self.times.values()) >= count


@contextlib.asynccontextmanager
async def clients(
    reconnecting: Callable[..., Any], url: str, delays: list[Callable[[], Generator[float]]]
) -> AsyncIterator[list[asyncio.Task[None]]]:
    """One task per client, looping over ``reconnecting``; all cancelled at the end."""

    async def client(number: int, schedule: Callable[[], Generator[float]]) -> None:
        connections = reconnecting(f"{url}/?client={number}", delays=schedule, open_timeout=2)
        async with contextlib.aclosing(connections):
            async for websocket in connections:
                with contextlib.suppress(ConnectionClosed):
                    await websocket.wait_closed()

    tasks = [asyncio.create_task(client(n, schedule)) for n, schedule in enumerate(delays)]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def known(first: float) -> Callable[[], Generator[float]]:
    """Delays the check knows in advance: ``first``, then 0.05 s forever."""

    def sequence() -> Generator[float]:
        yield first
        while True:
            yield 0.05

    return sequence


async def test_waits_its_first_delay_before_reconnecting_after_a_lost_connection(load):
    """After a lost connection it waits next(delays()) before reconnecting (websockets does not)"""
    reconnecting = load("jittered_reconnect").reconnecting
    firsts = [0.0, 0.1, 0.2, 0.3, 0.4]
    arrivals = Arrivals(close_first=True)
    server = serve_in_background(arrivals.handler)
    try:
        async with clients(reconnecting, server.url, [known(first) for first in firsts]):
            try:
                await wait_until(lambda: arrivals.connected(len(firsts)), within=TIMEOUT)
            except TimeoutError:
                pytest.fail(f"{len(firsts)} clients did not all connect within {TIMEOUT:g} s")
            lost = time.monotonic()
            arrivals.release.set()  # the server closes every first connection now
            try:
                await wait_until(lambda: arrivals.connected(len(firsts), 2), within=TIMEOUT)
            except TimeoutError:
                pytest.fail(
                    f"the server closed every client's connection (1001); {TIMEOUT:g} s later "
                    "not all had reconnected"
                )
    finally:
        await asyncio.to_thread(server.stop)
    for number, first in enumerate(firsts):
        waited = arrivals.times[number][1] - lost
        assert first - 0.01 <= waited <= first + 0.25, (
            f"client {number}'s connection was lost; it reconnected {waited:.3f} s later, "
            f"expected after its first delay, {first:g} s"
            + (
                ": websockets reconnects at once after a lost connection (it draws a delay "
                "only after a failed attempt); sleep next(schedule) first"
                if waited < first - 0.01
                else ""
            )
        )


async def test_after_a_server_restart_reconnections_are_spread_out(load):
    """Many clients, their server restarted on the same port: reconnections spread, no herd"""
    module = load("jittered_reconnect")
    count, first = 40, 1.0
    delays = [
        partial(module.jittered_delays, first=first, base=0.1, cap=1.0, rng=random.Random(n))
        for n in range(count)
    ]
    arrivals = Arrivals()
    server = serve_in_background(arrivals.handler)
    port = server.port
    try:
        async with clients(module.reconnecting, server.url, delays):
            try:
                await wait_until(lambda: arrivals.connected(count), within=TIMEOUT)
            except TimeoutError:
                pytest.fail(f"{count} clients did not all connect within {TIMEOUT:g} s")
            await asyncio.to_thread(server.stop)  # every client loses its connection (1001)
            arrivals = Arrivals()
            server = serve_in_background(arrivals.handler, port=port)
            restarted = time.monotonic()
            try:
                await wait_until(lambda: arrivals.connected(count), within=TIMEOUT)
            except TimeoutError:
                with arrivals.lock:
                    back = len(arrivals.times)
                pytest.fail(
                    f"the server restarted; {TIMEOUT:g} s later {back} of {count} clients "
                    "had reconnected"
                )
    finally:
        await asyncio.to_thread(server.stop)
    back = sorted(times[0] - restarted for times in arrivals.times.values())
    peak = max(sum(start <= other < start + 0.1 for other in back) for start in back)
    histogram = [
        sum(n / 10 <= t < (n + 1) / 10 for t in back) for n in range(int(back[-1] * 10) + 1)
    ]
    assert peak <= count // 2, (
        f"{count} clients lost their server together; {peak} of them reconnected within "
        f"100 ms of each other (per 100 ms after the restart: {histogram}): a thundering "
        "herd; randomise the delays"
    )
