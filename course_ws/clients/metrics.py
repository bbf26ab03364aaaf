"""Reading a server's ``GET /metrics``, as an operator (or a leak test) would."""

from __future__ import annotations

import urllib.request

from course_ws.chat.metrics import read_metrics


def get_metrics(http_url: str, *, timeout: float = 5.0) -> dict[str, float]:
    """The samples of ``{http_url}/metrics`` by name, labels included (blocking).

    ``get_metrics(server.http_url)["course_ws_connections"]`` is the number of
    open WebSocket connections; from a coroutine, call it through
    ``asyncio.to_thread`` so that a slow server cannot stall the loop.
    """
    with urllib.request.urlopen(f"{http_url}/metrics", timeout=timeout) as response:
        return read_metrics(response.read().decode())
