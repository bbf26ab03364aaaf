"""nginx's idle cut and a client that keeps connecting (``course_ws.lab.scaling_proxy``).

With the real ``nginx``: a quiet WebSocket behind a server that never pings is cut at
``proxy_read_timeout`` with 1006; behind a server that pings it stays open.
:func:`keep_connecting` counts connects that work and connects that fail.
"""

from __future__ import annotations

import asyncio

from required import require_program

from course_ws import serve_in_background
from course_ws.hosting.redis_server import free_loopback_port
from course_ws.lab.scaling_proxy import (
    Lifetime,
    keep_connecting,
    proxy_with_read_timeout,
    quiet_lifetime,
)


def test_a_lifetime_says_how_it_ended():
    assert str(Lifetime(None, None)) == "still open"
    assert str(Lifetime(1.0, 1006)) == "cut after 1.0 s, close code 1006"


async def test_a_quiet_websocket_is_cut_at_the_read_timeout_unless_the_server_pings():
    require_program("nginx")
    with (
        serve_in_background("chat", ping_interval=None) as silent,
        serve_in_background("chat", ping_interval=0.3) as pinging,
        proxy_with_read_timeout((silent.host, silent.port), 1) as silent_proxy,
        proxy_with_read_timeout((pinging.host, pinging.port), 1) as pinging_proxy,
    ):
        assert "proxy_read_timeout 1s;" in silent_proxy.config
        cut, kept = await asyncio.gather(
            quiet_lifetime(silent_proxy.url, within=3.0),
            quiet_lifetime(pinging_proxy.url, within=2.0),
        )
    assert cut.code == 1006
    assert cut.closed_after is not None
    assert 0.9 <= cut.closed_after <= 2.0
    assert kept == Lifetime(None, None)


async def test_keep_connecting_counts_what_works_and_what_fails():
    stop = asyncio.Event()
    with serve_in_background("echo") as server:
        connecting = asyncio.create_task(keep_connecting(server.url, stop))
        await asyncio.sleep(0.3)
        stop.set()
        seen = await connecting
    assert seen.worked > 3
    assert seen.failed == []
    assert seen.closed == []

    stop = asyncio.Event()
    nowhere = f"ws://127.0.0.1:{free_loopback_port()}"
    connecting = asyncio.create_task(keep_connecting(nowhere, stop))
    await asyncio.sleep(0.2)
    stop.set()
    refused = await connecting
    assert refused.worked == 0
    assert refused.failed
    assert all("ConnectionRefused" in failure for failure in refused.failed)
