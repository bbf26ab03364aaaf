"""Pushing from an ASGI app: who notices that the client left, and when.

Two raw ASGI applications push a tick every :data:`TICK` seconds (100 ms):

- :func:`send_only_clock` only ever sends, as most "live feed" examples do: it
  calls ``receive()`` once, for ``websocket.connect``, and never again;
- :func:`two_task_clock` runs the **two-task pattern**: one task reads, which is
  where ``websocket.disconnect`` arrives, one task writes, and an
  :class:`asyncio.TaskGroup` cancels both as soon as either one ends.

:func:`leave_while_pushed` is the experiment: a client reads a few ticks, maybe
says something first, closes, and the application's :class:`~course_ws.lab.asgi_trace.AsgiTrace`
tells how long it went on pushing and what made it stop.

What uvicorn 0.54 does (``websockets_sansio_impl.py`` and ``wsproto_impl.py``
alike), which the experiment shows:

- A client's close frame puts ``websocket.disconnect`` (with its code and reason)
  in the connection's queue, which only ``receive()`` reads. A send after it raises
  ``ClientDisconnected``, an :class:`OSError` (ASGI 2.4), with no code: a send-only
  handler learns that the client left at its *next* send, and never why.
- After each message it queues for the app, uvicorn **stops reading the socket**
  (``transport.pause_reading()``) until the app has received everything queued.
  A handler that never calls ``receive()`` after the client said one thing leaves
  the socket unread for good: the client's close frame is never read, its close
  handshake never completes, and the handler pushes into the void until the client
  gives up (its close timeout) and drops the TCP connection.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from websockets.asyncio.client import connect

from course_ws.clients.reconnecting import describe_close
from course_ws.lab.asgi_trace import AsgiTrace, ConnectionTrace, StepKind
from course_ws.servers._asgi_host import Receive, Scope, Send

TICK = 0.1
"""Seconds between two pushes."""


class ClientLeft(Exception):
    """The reader got ``websocket.disconnect``: raised to end the task group, which cancels
    the writer."""


async def send_only_clock(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, then push ``tick 1``, ``tick 2``… every 100 ms; never read again."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    for n in range(1, 1_000_000):
        await send({"type": "websocket.send", "text": f"tick {n}"})
        await asyncio.sleep(TICK)


async def two_task_clock(scope: Scope, receive: Receive, send: Send) -> None:
    """The same pushes, with a reader beside the writer: the first to end stops both."""
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})

    async def read() -> None:  # the only place websocket.disconnect can arrive
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                raise ClientLeft(message["code"], message.get("reason", ""))
            # a real handler acts on message.get("text") / message.get("bytes") here

    async def write() -> None:
        for n in range(1, 1_000_000):
            await send({"type": "websocket.send", "text": f"tick {n}"})
            await asyncio.sleep(TICK)

    try:
        async with asyncio.TaskGroup() as group:  # one task raising cancels the other
            group.create_task(read())
            group.create_task(write())
    except* ClientLeft:
        pass  # the reader saw the client leave, with its code and reason
    except* OSError:
        pass  # a send raised first: the client is gone (ASGI 2.4)


@dataclass(frozen=True)
class Departure:
    """How a pushing application took a client's departure, from the moment the client closed."""

    app: str
    said: str | None
    """What the client sent before leaving (``None``: nothing)."""
    pushes_after: int
    """Pushes the application made after the client began its close, and that went through."""
    noticed_after: float
    """Seconds from the client's close to the end of the application call."""
    noticed_by: str
    """What told the application: the ``websocket.disconnect`` it received, or a send raising."""
    client_close: str
    """What the client's connection ended with: code, meaning, reason."""
    client_close_took: float
    """Seconds the client's ``close()`` took."""
    call: ConnectionTrace = field(repr=False, compare=False)
    """The application call's whole trace."""
    left: float = field(repr=False, compare=False)
    """:func:`time.monotonic` when the client began its close."""

    def since_left(self, kind: StepKind, name: str | None = None) -> list[float]:
        """Seconds from the client's close to each step of ``kind`` (and ``name``), negative
        before it: the data of a time line."""
        return [
            step.at - self.left
            for step in self.call.steps
            if step.kind == kind and name in (None, step.name)
        ]

    def __str__(self) -> str:
        said = f"said {self.said!r}, then closed" if self.said else "closed without a word"
        push = "push" if self.pushes_after == 1 else "pushes"
        return (
            f"{self.app} (the client {said}):\n"
            f"  the app went on for {self.noticed_after * 1000:.0f} ms, "
            f"{self.pushes_after} {push} after the client left\n"
            f"  it learned it from: {self.noticed_by}\n"
            f"  the client's close took {self.client_close_took * 1000:.0f} ms, "
            f"and ended with {self.client_close}"
        )


async def leave_while_pushed(
    url: str,
    trace: AsgiTrace,
    *,
    say: str | None = None,
    ticks: int = 3,
    close_timeout: float = 1.0,
) -> Departure:
    """Connect to a pushing app traced by ``trace``, read ``ticks`` pushes, close with 1000.

    ``say``: a message to send first (the app may never read it). ``close_timeout``:
    how long the client waits for the server's answer to its close frame before it
    drops the TCP connection (``websockets`` waits 10 s by default). Returns what the
    trace saw after the client closed; ``trace`` must record nothing else meanwhile.
    """
    before = len(trace.of_type("websocket"))
    async with connect(url, close_timeout=close_timeout) as websocket:
        if say is not None:
            await websocket.send(say)
        for _ in range(ticks):
            await websocket.recv()
        left = time.monotonic()
        await websocket.close(1000, "bye")
        took = time.monotonic() - left
    calls = await trace.wait_done(before + 1, within=close_timeout + 5.0)
    call = calls[before]
    after = [step for step in call.steps if step.at >= left]
    # a push "went through" unless the step right after it is that send raising
    following = [*after[1:], None]
    pushes = sum(
        step.kind == "send" and (then is None or then.kind != "send raised")
        for step, then in zip(after, following, strict=True)
    )
    noticed = next(
        (
            step
            for step in after
            if step.kind == "send raised"
            or (step.kind == "receive" and step.name == "websocket.disconnect")
        ),
        None,
    )
    if noticed is None:
        noticed_by = "nothing: it ended otherwise"
    elif noticed.kind == "receive":
        noticed_by = f"{noticed.name} {noticed.detail}"
    else:
        noticed_by = f"a send raised {noticed.name} (an OSError), with no code nor reason"
    assert call.ended is not None
    return Departure(
        app=getattr(trace.app, "__name__", type(trace.app).__name__),
        said=say,
        pushes_after=pushes,
        noticed_after=call.ended - left,
        noticed_by=noticed_by,
        client_close=describe_close(websocket),
        client_close_took=took,
        call=call,
        left=left,
    )
