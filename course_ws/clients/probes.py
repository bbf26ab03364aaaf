"""Probing a running catalogue server from outside, as its tests and an operator would.

Each probe *does* something to a server (connect, stop it, send it SIGTERM)
and returns what it saw; the caller decides whether that is right. The ASGI
servers' tests (``asgi``, ``starlette``, ``fastapi``) share them, so the three
prove the same things the same way:

- :func:`handshake_refusal`: what an HTTP refusal of a handshake said;
- :func:`stop_with_clients`: stop a server under a chat and an echo client,
  and read the close codes they were told (1001 is right);
- :func:`gauges_after_everyone_left`: fill a room, leave (one client without
  a goodbye), and wait for ``/metrics``' gauges to settle;
- :func:`serve_then_sigterm`: ``course-ws serve NAME --port 0`` as a process,
  its banner and URLs, clients on two endpoints, then SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection as SyncClientConnection
from websockets.sync.client import connect as connect_sync

from course_ws.clients.chat import ChatClient
from course_ws.clients.metrics import get_metrics
from course_ws.clients.waiting import wait_until

COURSE_WS = str(Path(sys.executable).with_name("course-ws"))
"""The ``course-ws`` command of the running interpreter's environment."""
LEAK_GAUGES = (
    "course_ws_connections",
    "course_ws_room_members",
    "course_ws_rooms_active",
    "course_ws_broker_subscriptions",
)
"""Gauges that must return to 0 once every client has left: anything else is a leak."""


def fresh_room() -> str:
    """A room name no other test or cell uses."""
    return f"r{uuid.uuid4().hex[:12]}"


async def scrape(http_url: str) -> dict[str, float]:
    """``GET {http_url}/metrics`` from a coroutine, in a thread: the loop keeps running."""
    return await asyncio.to_thread(get_metrics, http_url)


async def closed_with(client: ChatClient, *, timeout: float = 5.0) -> int | None:
    """Read events until the server closes ``client``; the close code it sent."""
    try:
        while True:
            await client.event(timeout=timeout)
    except ConnectionClosed:
        return client.websocket.close_code


def drain(client: SyncClientConnection, *, timeout: float = 10.0) -> None:
    """Read until the connection closes: raises its :class:`ConnectionClosed`."""
    while True:
        client.recv(timeout=timeout)


@dataclass(frozen=True)
class HandshakeRefusal:
    """An opening handshake answered with an HTTP response instead of 101."""

    status: int
    content_type: str
    text: str


async def handshake_refusal(url: str) -> HandshakeRefusal | None:
    """Try to open ``url``; the HTTP refusal, or ``None`` if the server accepted (then closed)."""
    try:
        async with connect(url):
            return None
    except InvalidStatus as refused:
        response = refused.response
        body = bytes(response.body or b"").decode("utf-8", "replace")
        return HandshakeRefusal(
            response.status_code, response.headers.get("Content-Type", ""), body
        )


@dataclass(frozen=True)
class Stopped:
    """What a chat and an echo client were told when the server stopped."""

    chat_code: int | None
    echo_code: int | None
    echo_reason: str | None


async def stop_with_clients(url: str, stop: Callable[[], object]) -> Stopped:
    """Connect a chat member and an echo client to ``url``, call ``stop()``, read their closes.

    ``stop`` is called in a thread (a :class:`~course_ws.BackgroundServer`'s
    ``stop`` blocks until the server is down).
    """
    chat = await ChatClient.connect(url, fresh_room(), user="ada")
    async with connect(url + "/echo") as echo:
        await echo.send("hi")
        if await echo.recv() != "hi":
            raise AssertionError("the echo client got no echo")
        await asyncio.to_thread(stop)
        chat_code = await closed_with(chat)
        try:
            async with asyncio.timeout(5):
                await echo.recv()
        except ConnectionClosed:
            pass
        return Stopped(chat_code, echo.close_code, echo.close_reason)


@dataclass
class Settled:
    """``/metrics`` with 3 members and an echo client connected, and after they left."""

    during: dict[str, float]
    after: dict[str, float] = field(default_factory=dict)


async def gauges_after_everyone_left(url: str, http_url: str, *, within: float = 5.0) -> Settled:
    """Three members and an echo client come and go; the gauges while there and after.

    One member leaves without a goodbye (its TCP connection aborted). Waits up
    to ``within`` seconds for every :data:`LEAK_GAUGES` gauge to be 0, and
    returns both readings; ``after`` is the last one taken, 0 or not.
    """
    name = fresh_room()
    clients = [await ChatClient.connect(url, name, user=f"u{n}") for n in range(3)]
    echo = await connect(url + "/echo")
    await clients[0].say("hello")
    for client in clients:
        await client.next("message")
    during = await scrape(http_url)
    await clients[0].close()
    await clients[2].close()
    clients[1].websocket.transport.abort()  # one leaves without a goodbye: the same
    await echo.close()
    settled = Settled(during)

    def all_zero() -> bool:
        settled.after = get_metrics(http_url)
        return all(settled.after[gauge] == 0 for gauge in LEAK_GAUGES)

    with contextlib.suppress(TimeoutError):  # the caller judges what was left
        await wait_until(all_zero, within=within, what="every gauge back to 0")
    return settled


@dataclass(frozen=True)
class Served:
    """What ``course-ws serve NAME --port 0`` printed and did, up to its exit after SIGTERM."""

    banner: str
    """The first line: ``NAME (STACK) listening on HOST:PORT``."""
    urls: list[str]
    """One URL per endpoint, as printed."""
    ws_base: str
    """``ws://HOST:PORT``, from the first URL."""
    echoed: str
    """What ``/echo`` sent back for ``hi``."""
    welcome: str
    """The first message on ``/chat/{room}``."""
    close_codes: list[int | None]
    """The codes the echo and the chat client received on SIGTERM (``None``: no close frame)."""
    returncode: int
    stderr: str

    @property
    def http_base(self) -> str:
        return self.ws_base.replace("ws://", "http://", 1)


def serve_then_sigterm(
    name: str, *, endpoints: int = 5, timeout: float = 10.0, command: str = COURSE_WS
) -> Served:
    """Run ``course-ws serve NAME --port 0``; echo, join a room, send SIGTERM, read the closes.

    ``endpoints`` is how many URL lines follow the banner. The process is
    killed if it is still running at the end (its exit code then says so).
    """
    process = subprocess.Popen(
        [command, "serve", name, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if process.stdout is None or process.stderr is None:
            raise RuntimeError("the server's output is not captured")
        banner = process.stdout.readline().rstrip("\n")
        urls = [process.stdout.readline().strip() for _ in range(endpoints)]
        base = re.fullmatch(r"(ws://[^/]+)/echo", urls[0] if urls else "")
        if base is None:
            raise AssertionError(f"the first URL is not /echo: {banner!r}, {urls}")
        codes: list[int | None] = []
        with (
            connect_sync(urls[0]) as echo,
            connect_sync(f"{base[1]}/chat/{fresh_room()}") as chat,
        ):
            echo.send("hi")
            echoed = str(echo.recv(timeout=timeout))
            welcome = str(chat.recv(timeout=timeout))
            process.send_signal(signal.SIGTERM)
            for client in (echo, chat):
                try:
                    drain(client, timeout=timeout)
                except ConnectionClosed as closed:
                    codes.append(closed.rcvd.code if closed.rcvd is not None else None)
        returncode = process.wait(timeout)
        return Served(
            banner, urls, base[1], echoed, welcome, codes, returncode, process.stderr.read()
        )
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()
