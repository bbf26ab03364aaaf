"""A client that keeps a session going across disconnections, and says what happened.

``websockets`` reconnects by itself: iterate over ``connect(url)`` instead of
entering it, and each time a connection is lost the loop opens a new one,
waiting longer after each failed attempt (exponential backoff)::

    async for websocket in connect(url):
        try:
            ...  # use the connection
        except ConnectionClosed:
            continue  # lost: connect again

:func:`keep_connected` is that loop, plus what a real client needs around it:
a timeline of events (connected, closed with which code, attempt failed,
waiting so long), a session that may stop the loop by returning, and a clean
1000 close when it stops — leaving ``async for`` by ``return``, ``break`` or
cancellation otherwise closes the connection with 1011 (internal error), as if
the client had crashed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, Literal, cast

from websockets.asyncio.client import ClientConnection, connect
from websockets.client import process_exception
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close
from websockets.protocol import State

from course_ws.clients.backoff import Backoff

EventKind = Literal["connected", "closed", "failed", "waiting", "finished", "stopped"]
Session = Callable[[ClientConnection], Awaitable[None]]

DEFAULT_BACKOFF = Backoff(first=0.5, factor=2.0, cap=30.0, jitter=0.5)
"""Half a second, then doubling up to 30 s, each wait cut by up to half at random."""


@dataclass(frozen=True)
class ConnectionEvent:
    """One step of a reconnecting client's life, ``at`` seconds after it started."""

    at: float
    kind: EventKind
    detail: str

    def __str__(self) -> str:
        return f"{self.at:.2f} s  {self.kind:<9}  {self.detail}"


def describe_close(websocket: ClientConnection) -> str:
    """``1001 (going away)``, ``1006 (abnormal closure [internal])``: code, meaning, reason."""
    code = websocket.close_code
    if code is None:
        return "not closed"
    return str(Close(code, websocket.close_reason or ""))


async def keep_connected(
    url: str,
    session: Session,
    *,
    reconnect_delays: Callable[[], Generator[float]] = DEFAULT_BACKOFF,
    on_event: Callable[[ConnectionEvent], None] | None = None,
    **connect_options: Any,
) -> None:
    """Run ``session(websocket)`` on a connection to ``url``; reconnect whenever it is lost.

    * The session ends because the **connection closed** (it returned after
      ``async for`` ended, or raised :exc:`~websockets.exceptions.ConnectionClosed`,
      also inside an ``ExceptionGroup`` from a ``TaskGroup``): connect again, after
      the delays of ``reconnect_delays`` if attempts fail.
    * The session **returns while the connection is open**: it is done; close
      with 1000 and return.
    * The caller **cancels** this coroutine: close with 1000 and re-raise.
    * An attempt fails with a **fatal** error (a 404 or 403 at the handshake, a bad
      URL): raise it; connecting again would fail the same way.

    ``on_event`` receives each :class:`ConnectionEvent`; ``connect_options`` go to
    :func:`websockets.asyncio.client.connect` (``open_timeout``, ``ping_interval``, ...).
    """
    loop = asyncio.get_running_loop()
    started = loop.time()

    def emit(kind: EventKind, detail: str) -> None:
        if on_event is not None:
            on_event(ConnectionEvent(round(loop.time() - started, 3), kind, detail))

    def note_failure(exc: Exception) -> Exception | None:
        verdict = process_exception(exc)  # websockets' own retry-or-raise decision
        emit("failed", f"{type(exc).__name__}{'' if verdict is None else ' (fatal)'}")
        return verdict

    def announced_delays() -> Generator[float]:
        for delay in reconnect_delays():
            emit("waiting", f"retrying in {delay:.2f} s")
            yield delay

    attempts = connect(
        url, reconnect_delays=announced_delays, process_exception=note_failure, **connect_options
    )
    number = 0
    # aclosing: finish the generator inside connect() now, not when it is garbage-collected.
    generator = cast(AsyncGenerator[ClientConnection, None], aiter(attempts))
    async with contextlib.aclosing(generator) as connections:
        async for websocket in connections:
            number += 1
            emit("connected", f"connection {number}")
            try:
                try:
                    await session(websocket)
                except* ConnectionClosed:
                    pass  # lost: reported below, then the loop connects again
            except asyncio.CancelledError:
                await websocket.close()
                emit("stopped", f"connection {number} closed: {describe_close(websocket)}")
                raise
            if websocket.state is State.OPEN:
                await websocket.close()
                emit("finished", f"connection {number} closed: {describe_close(websocket)}")
                return
            await websocket.wait_closed()
            emit("closed", f"connection {number}: {describe_close(websocket)}")
