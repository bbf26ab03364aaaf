"""Benchmarks: the course's claims about speed and size, measured on your machine.

Each benchmark is a sibling module here with one entry point::

    report = course_ws.bench.mask.run(quick=True)
    print(report)                      # a readable table

``run(*, quick=False)`` measures everything in one go and returns a result
object whose ``str()`` is the report, and whose fields hold the numbers for a
plot or a test. ``quick=True`` takes a few seconds (notebooks, tests); the full
run is what the files in ``benchmarks/`` record. From a terminal::

    course-ws bench mask [--quick]

Timings are only ever *reported*, never asserted by the tests: a loaded CI
machine is slow, not broken.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

__all__ = ["BENCHMARKS", "ONE_ADDRESS_CROWD", "BenchReport", "run_benchmark"]

ONE_ADDRESS_CROWD: dict[str, Any] = {
    "message_rate": 1e6,
    "message_burst": 10**6,
    "connect_rate": 1e6,
    "connect_burst": 10**6,
    "max_connections_per_address": 10**6,
}
"""Chat limits for a load test, whose thousands of clients all come from one address."""

BENCHMARKS: dict[str, str] = {
    "mask": "masking throughput: course_ws vs a per-byte loop vs websockets' own",
    "transports": "polling vs long-polling vs WebSocket: bytes and latency per message",
    "fanout": "one message to 1,000 and 10,000 clients: strategies and the chat server",
    "memory": "server memory per idle connection, default and tuned settings",
    "echo": "echo round trips/s and server CPU: bare websockets vs the course's servers",
    "asgi": "the asgi, starlette and fastapi servers vs their bare frameworks and chat: "
    "echo rate, fan-out",
    "scale": "through nginx, 2 workers and Redis: 10,000 connections held, fan-out latency "
    "added by Redis, messages/s with 1 and 2 workers",
}
"""Every benchmark by module name, with what it measures."""


class BenchReport(Protocol):
    """What every benchmark's ``run()`` returns: printing it gives the report."""

    quick: bool

    def __str__(self) -> str: ...


def run_benchmark(name: str, *, quick: bool = False) -> BenchReport:
    """Import ``course_ws.bench.NAME`` (only when asked: no cost for the others) and run it."""
    if name not in BENCHMARKS:
        raise LookupError(f"unknown benchmark {name!r}; choose from {', '.join(BENCHMARKS)}")
    module = importlib.import_module(f"{__name__}.{name}")
    report: BenchReport = module.run(quick=quick)
    return report
