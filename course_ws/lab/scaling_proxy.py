"""nginx in front, seen by clients: a quiet WebSocket cut by ``proxy_read_timeout``, and
connections opened one after another while the workers behind are replaced.

nginx closes a proxied connection when the upstream has sent nothing for
``proxy_read_timeout`` (60 s unless configured). A WebSocket on which nobody
speaks, behind a server that does not ping, is cut then, without a close
frame: the client sees 1006. :func:`proxy_with_read_timeout` renders the
course's ``deploy/nginx.conf`` with a short timeout (seconds instead of a
minute, so that a notebook can wait for it) in front of one server, and
:func:`quiet_lifetime` measures how long a silent client stays connected.

:func:`keep_connecting` opens, uses and closes one WebSocket after another
until told to stop, and counts what happened to each: what a deploy must
never break.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws.clients.chat import ChatClient
from course_ws.hosting.nginx import NginxServer, render_nginx_conf
from course_ws.hosting.redis_server import free_loopback_port

_READ_TIMEOUT = re.compile(r"(?m)^(\s*proxy_read_timeout )\d+s;")


@contextlib.contextmanager
def proxy_with_read_timeout(upstream: tuple[str, int], read_timeout: int) -> Iterator[NginxServer]:
    """nginx on a free port in front of ``upstream``, ``proxy_read_timeout`` set to
    ``read_timeout`` seconds; stopped after the block. Raises
    :class:`~course_ws.hosting.nginx.NginxNotInstalled` without nginx."""
    port = free_loopback_port()
    config = render_nginx_conf([upstream], ("127.0.0.1", port))
    config, found = _READ_TIMEOUT.subn(rf"\g<1>{read_timeout}s;", config)
    if found != 1:
        raise ValueError("deploy/nginx.conf: expected one proxy_read_timeout line")
    with (
        tempfile.TemporaryDirectory(prefix="course-ws-nginx-") as folder,
        NginxServer(Path(folder), config, port) as nginx,
    ):
        yield nginx


@dataclass(frozen=True)
class Lifetime:
    """How a connection on which nobody spoke ended, or that it had not."""

    closed_after: float | None
    """Seconds from the welcome to the end (``None``: still open when we stopped waiting)."""
    code: int | None
    """The close code the client reports (1006: the TCP connection ended without a close frame)."""

    def __str__(self) -> str:
        if self.closed_after is None:
            return "still open"
        return f"cut after {self.closed_after:.1f} s, close code {self.code}"


async def quiet_lifetime(base: str, within: float) -> Lifetime:
    """Join room ``quiet`` at ``base``, say nothing, never ping; how long does it last?"""
    client = await ChatClient.connect(base, "quiet", ping_interval=None)
    loop = asyncio.get_running_loop()
    joined = loop.time()
    try:
        async with asyncio.timeout(within):
            await client.websocket.wait_closed()
    except TimeoutError:
        return Lifetime(None, None)
    finally:
        await client.close()
    return Lifetime(round(loop.time() - joined, 1), client.websocket.close_code)


@dataclass
class Connects:
    """What a client that keeps connecting saw."""

    worked: int = 0
    """Opened, echoed once (the same text back), closed normally."""
    closed: list[int | None] = field(default_factory=list)
    """Opened, then closed by the server before the echo came back (1001: a worker stopping)."""
    failed: list[str] = field(default_factory=list)
    """Not opened (refused, reset, an HTTP error status, or no answer within 5 s), or
    opened and echoed something else."""

    @property
    def refused(self) -> list[str]:
        """The failures that were a refused TCP connection (nothing listening)."""
        return [failure for failure in self.failed if "ConnectionRefused" in failure]

    def __str__(self) -> str:
        codes = ", ".join(str(code) for code in sorted(set(self.closed), key=str)) or "-"
        return (
            f"{self.worked + len(self.closed) + len(self.failed)} connects: "
            f"{self.worked} worked, {len(self.closed)} closed by the server after opening "
            f"(codes: {codes}), {len(self.failed)} failed"
        )


async def keep_connecting(base: str, stop: asyncio.Event) -> Connects:
    """Open ``base/echo``, echo one message, close; again and again until ``stop`` is set."""
    seen = Connects()
    while not stop.is_set():
        try:
            websocket = await connect(f"{base}/echo", open_timeout=5)
        except (OSError, InvalidStatus, TimeoutError) as exc:
            seen.failed.append(repr(exc))
            continue
        try:
            await websocket.send("ping")
            reply = await websocket.recv()
            if reply == "ping":
                seen.worked += 1
            else:
                seen.failed.append(f"echoed {reply!r}")
        except ConnectionClosed as closed:
            seen.closed.append(closed.rcvd.code if closed.rcvd else None)
        finally:
            await websocket.close()
    return seen
