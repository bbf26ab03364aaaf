"""Watching an ASGI application work: each call's scope, and every message in and out.

:class:`AsgiTrace` is an ASGI middleware. Wrapped around any ASGI 3 application,
it changes nothing and records, for every call of the application (one per
WebSocket connection, HTTP request, or the ``lifespan`` of the server):

- the **scope**, copied when the call starts;
- every message that ``receive()`` returned (``←``, into the application) and every
  message the application passed to ``send()`` (``→``, out of it), each with a short
  summary of its payload, in the order they happened;
- a ``send()`` that raised (``✗``), and how the call ended: returned, or raised what.

Each recorded step carries a :func:`time.monotonic` timestamp, the clock every
thread of the process shares, so that a client in a notebook cell and an
application in a server's thread can be put on one time line.

Printing is deterministic by default: a trace prints no times, no object
addresses, and the one header that is random per handshake
(``sec-websocket-key``) as its length; ports print as ``127.0.0.1:PORT``-style
``host:port``, which the course's nbval sanitizer folds. ``format(timings=True)``
adds the milliseconds since the call started.

    >>> trace = AsgiTrace(app)              # doctest: +SKIP
    >>> server = serve_in_background(trace) # doctest: +SKIP
    >>> ...                                 # a client connects, talks, leaves
    >>> print(trace.last())                 # doctest: +SKIP
    websocket /echo from 127.0.0.1:PORT
      ← websocket.connect
      → websocket.accept
      ...
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

from course_ws.servers._asgi_host import ASGIApp, Message, Receive, Scope, Send

StepKind = Literal["receive", "send", "send raised", "returned", "raised"]

ARROWS: dict[StepKind, str] = {
    "receive": "←",
    "send": "→",
    "send raised": "✗",
    "returned": "■",
    "raised": "✗",
}
"""How each kind of step starts its line: into the app, out of it, an error, the end."""

PREVIEW = 40
"""Characters (or bytes) of a payload shown before it is cut with ``…``."""

VOLATILE_HEADERS = frozenset({b"sec-websocket-key"})
"""Headers whose value is random per handshake: printed as their length."""

_sequence = itertools.count()  # one order for the steps of every call, across threads


def preview(value: str | bytes, limit: int = PREVIEW) -> str:
    """``'hello'`` or ``b'\\x00\\x01'``, cut after ``limit`` items with the full size said."""
    if len(value) <= limit:
        return repr(value)
    unit = "chars" if isinstance(value, str) else "bytes"
    return f"{value[:limit]!r}… ({len(value)} {unit})"


def host_port(address: Iterable[Any] | None) -> str:
    """``('127.0.0.1', 8000)`` as ``127.0.0.1:8000``; a Unix socket or nothing as itself."""
    if address is None:
        return "None"
    parts = list(address)
    if len(parts) == 2 and parts[1] is not None:
        host = f"[{parts[0]}]" if ":" in str(parts[0]) else str(parts[0])
        return f"{host}:{parts[1]}"
    return ":".join(map(str, parts))


def _header(name: bytes, value: bytes) -> str:
    shown = f"<{len(value)} bytes, random>" if name in VOLATILE_HEADERS else value.decode("latin-1")
    return f"{name.decode('latin-1')}: {shown}"


def summarize(message: Mapping[str, Any]) -> str:
    """The payload of one ASGI message in a few words: what a reader needs, not every key.

    ``text``/``bytes`` are shown cut to :data:`PREVIEW`; ``code`` and ``reason`` of
    a close or disconnect; ``status`` and ``headers`` of an HTTP response start,
    its ``body``; ``subprotocol`` and ``headers`` of an accept; any other key as
    ``key=value``. The ``type`` is not repeated.
    """
    parts: list[str] = []
    for key, value in message.items():
        if key == "type" or value is None:
            continue
        if key == "more_body" and not value:
            continue
        if key == "headers":
            parts.append("headers=[" + ", ".join(_header(n, v) for n, v in value) + "]")
        elif key in ("text", "bytes", "body"):
            parts.append(f"{key}={preview(value)}")
        elif key == "reason" and not value:
            continue  # an empty reason says nothing
        elif isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"{key}={int(value)}")  # wsproto's codes are IntEnums: show the number
        else:
            parts.append(f"{key}={value!r}")
    return " ".join(parts)


def describe_scope(scope: Mapping[str, Any]) -> str:
    """Every key of an ASGI scope, one per line; headers one per line too.

    The ``sec-websocket-key`` header is shown as its length (random per handshake),
    ``server`` and ``client`` as ``host:port``, ``state`` and ``extensions`` by
    their keys (their values are server objects).
    """
    lines: list[str] = []
    for key, value in scope.items():
        if key == "headers":
            lines.append("headers:")
            lines.extend(f"    {_header(name, val)}" for name, val in value)
        elif key in ("server", "client"):
            lines.append(f"{key}: {host_port(value)}")
        elif key in ("state", "extensions") and isinstance(value, Mapping):
            lines.append(f"{key}: {{{', '.join(repr(k) + ': …' for k in value)}}}")
        elif key == "app":  # Starlette puts the application object in the scope
            lines.append(f"{key}: <{type(value).__name__}>")
        else:
            lines.append(f"{key}: {value!r}")
    return "\n".join(lines)


@dataclass(frozen=True)
class TraceStep:
    """One thing that happened in a call: a message in or out, a ``send`` that raised, the end."""

    kind: StepKind
    name: str
    """The message's ``type``, or the exception's class name."""
    detail: str
    """:func:`summarize` of the message, or the exception's text."""
    at: float
    """:func:`time.monotonic` when it happened (for a send: when the app called ``send``)."""
    order: int
    """Its place among the steps of every call this process traced."""
    message: Mapping[str, Any] | None = None
    """The message itself (``receive`` and ``send`` steps); ``None`` for the others."""
    error: BaseException | None = None
    """The exception (``send raised`` and ``raised`` steps)."""

    def line(self, start: float | None = None) -> str:
        """``← websocket.receive  text='hi'``; with ``start``, ``(+1.2 ms)`` since then."""
        arrow = ARROWS[self.kind]
        if self.kind in ("receive", "send"):
            text = f"{arrow} {self.name:<28} {self.detail}".rstrip()
        elif self.kind == "returned":
            text = f"{arrow} app returned"
        else:
            verb = "send raised" if self.kind == "send raised" else "app raised"
            text = f"{arrow} {verb} {self.name}" + (f": {self.detail}" if self.detail else "")
        if start is not None:
            text += f"  (+{(self.at - start) * 1000:.1f} ms)"
        return text


@dataclass
class ConnectionTrace:
    """What one call of the application saw and did: its scope, then its steps in order."""

    scope: dict[str, Any]
    """A shallow copy of the scope the server passed."""
    started: float
    """:func:`time.monotonic` when the server called the application."""
    steps: list[TraceStep] = field(default_factory=list)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def kind(self) -> str:
        """The scope's type: ``websocket``, ``http`` or ``lifespan``."""
        return str(self.scope.get("type"))

    @property
    def target(self) -> str:
        """The path with its query string (empty for ``lifespan``)."""
        if "path" not in self.scope:
            return ""
        query = self.scope.get("query_string") or b""
        path = str(self.scope["path"])
        return f"{path}?{query.decode('latin-1')}" if query else path

    @property
    def done(self) -> bool:
        """Whether the application call has returned or raised."""
        return self._done.is_set()

    @property
    def ended(self) -> float | None:
        """:func:`time.monotonic` when the call returned or raised; ``None`` while it runs."""
        if not self.done:
            return None
        return self.steps[-1].at

    @property
    def heading(self) -> str:
        """``websocket /echo from 127.0.0.1:PORT``, ``lifespan``, ``http GET /healthz ...``."""
        words = [self.kind]
        if self.kind == "http":
            words.append(str(self.scope.get("method")))
        if self.target:
            words.append(self.target)
        if self.scope.get("client"):
            words.append(f"from {host_port(self.scope['client'])}")
        return " ".join(words)

    def received(self, message_type: str | None = None) -> list[Mapping[str, Any]]:
        """The messages ``receive()`` returned, or only those of ``message_type``."""
        return [
            step.message
            for step in self.steps
            if step.kind == "receive"
            and step.message is not None
            and message_type in (None, step.name)
        ]

    def sent(self, message_type: str | None = None) -> list[Mapping[str, Any]]:
        """The messages the application passed to ``send()``, or only those of ``message_type``."""
        return [
            step.message
            for step in self.steps
            if step.kind == "send"
            and step.message is not None
            and message_type in (None, step.name)
        ]

    def format(self, *, timings: bool = False, scope: bool = False) -> str:
        """The heading, then one line per step; ``scope=True`` prints the whole scope first.

        ``timings=True`` ends each line with the milliseconds since the call started:
        a measurement, different on every run.
        """
        lines = [self.heading]
        if scope:
            lines.extend(f"  | {line}" for line in describe_scope(self.scope).splitlines())
        start = self.started if timings else None
        lines.extend(f"  {step.line(start)}" for step in self.steps)
        if not self.done:
            lines.append("  … (still running)")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()

    # -- recording (called by AsgiTrace, in the server's thread) ---------------------------

    def record(
        self,
        kind: StepKind,
        name: str,
        detail: str = "",
        *,
        message: Mapping[str, Any] | None = None,
        error: BaseException | None = None,
    ) -> TraceStep:
        step = TraceStep(
            kind, name, detail, time.monotonic(), next(_sequence), message=message, error=error
        )
        self.steps.append(step)
        return step

    def finish(self, error: BaseException | None) -> None:
        if error is None:
            self.record("returned", "")
        else:
            self.record("raised", type(error).__name__, str(error), error=error)
        self._done.set()


class AsgiTrace:
    """ASGI middleware that records every call of ``app``: scope, messages, how it ended.

    Transparent: every message and exception passes through unchanged, so the
    application behaves as without it. ``types`` chooses which scopes are recorded
    (by default WebSocket connections and the lifespan; add ``"http"`` for requests);
    the others pass through unrecorded. Recorded calls are kept in :attr:`calls`,
    oldest first, until :meth:`clear`.
    """

    def __init__(self, app: ASGIApp, *, types: Iterable[str] = ("websocket", "lifespan")) -> None:
        self.app = app
        self.types = frozenset(types)
        self.calls: list[ConnectionTrace] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in self.types:
            await self.app(scope, receive, send)
            return
        trace = ConnectionTrace(dict(scope), time.monotonic())
        self.calls.append(trace)

        async def traced_receive() -> Message:
            message = await receive()
            trace.record("receive", message["type"], summarize(message), message=dict(message))
            return message

        async def traced_send(message: MutableMapping[str, Any]) -> None:
            trace.record("send", message["type"], summarize(message), message=dict(message))
            try:
                await send(message)
            except BaseException as exc:
                if not isinstance(exc, asyncio.CancelledError):
                    trace.record("send raised", type(exc).__name__, str(exc), error=exc)
                raise

        try:
            await self.app(scope, traced_receive, traced_send)
        except BaseException as exc:
            trace.finish(exc)
            raise
        trace.finish(None)

    # -- reading --------------------------------------------------------------------------

    def of_type(self, kind: str) -> list[ConnectionTrace]:
        """The recorded calls whose scope type is ``kind``, oldest first."""
        return [call for call in self.calls if call.kind == kind]

    def last(self, kind: str = "websocket") -> ConnectionTrace:
        """The most recent call of scope type ``kind``."""
        calls = self.of_type(kind)
        if not calls:
            raise LookupError(f"no {kind} call recorded yet")
        return calls[-1]

    def clear(self) -> None:
        """Forget every finished call; calls still running (the lifespan, say) are kept."""
        self.calls[:] = [call for call in self.calls if not call.done]

    async def wait_done(
        self, count: int = 1, *, kind: str = "websocket", within: float = 5.0
    ) -> list[ConnectionTrace]:
        """Wait until ``count`` calls of ``kind`` are recorded and over; return them, oldest first.

        The application runs in a server's thread: this polls, without blocking
        the caller's event loop, and raises :class:`TimeoutError` after ``within`` s.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            calls = self.of_type(kind)
            if len(calls) >= count and all(call.done for call in calls[:count]):
                return calls[:count]
            if loop.time() >= deadline:
                finished = sum(call.done for call in calls)
                raise TimeoutError(
                    f"{count} {kind} call(s) did not finish within {within:g} s "
                    f"({len(calls)} started, {finished} finished)"
                )
            await asyncio.sleep(0.005)

    def timeline(self, *, since: float | None = None, timings: bool = False) -> str:
        """Every step of every recorded call in the order it happened, each with its call.

        ``since`` (a :func:`time.monotonic` value) leaves out what happened before;
        ``timings=True`` adds the milliseconds since ``since`` (or the first step shown).
        """
        labels = {id(call): call.heading.split(" from ")[0] for call in self.calls}
        steps = sorted(
            ((step, labels[id(call)]) for call in self.calls for step in call.steps),
            key=lambda pair: pair[0].order,
        )
        if since is not None:
            steps = [(step, label) for step, label in steps if step.at >= since]
        if not steps:
            return "(nothing recorded)"
        width = max(len(label) for _, label in steps)
        start = (since if since is not None else steps[0][0].at) if timings else None
        return "\n".join(f"{label:<{width}}  {step.line(start)}" for step, label in steps)
