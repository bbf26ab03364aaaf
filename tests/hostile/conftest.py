"""Servers under attack: every catalogue entry, so a new server inherits the standard.

Each test module gets one server per catalogue name (module scope): starting a
server takes a moment, and every attack is followed by a normal echo on the
same server, which proves that the attack left it serving.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from course_ws import BackgroundServer, serve_in_background
from course_ws.hosting.catalogue import CATALOGUE

SERVERS = list(CATALOGUE)


@pytest.fixture(scope="module", params=SERVERS)
def server(request: pytest.FixtureRequest) -> Iterator[BackgroundServer]:
    """A catalogue server that logs at INFO, so ``server.logs`` shows what it did."""
    with serve_in_background(request.param, log_level="info") as running:
        yield running
