"""Servers under test: every catalogue server with a /chat/{room} endpoint, or those named."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from course_ws import BackgroundServer, serve_in_background
from course_ws.hosting.catalogue import CATALOGUE

CHAT_SERVERS = [name for name, entry in CATALOGUE.items() if "/chat/{room}" in entry.endpoints]
FAST = {"message_rate": 10_000.0, "message_burst": 10_000}
"""The shared server must not rate-limit the suite; one test checks the limit on its own server."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "server_name" in metafunc.fixturenames:
        names = metafunc.config.getoption("--conformance-server") or CHAT_SERVERS
        metafunc.parametrize("server_name", names, scope="module")


@pytest.fixture
def fast() -> dict[str, object]:
    """Options for a test's own server that must not rate-limit it."""
    return dict(FAST)


@pytest.fixture(scope="module")
def server(server_name: str) -> Iterator[BackgroundServer]:
    """One server per module and name; each test uses rooms of its own."""
    with serve_in_background(server_name, **FAST) as running:
        yield running
