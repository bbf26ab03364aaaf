"""Checks for exercise ``chat_page`` (exercises/03_chat/chat_page.html).

The page is checked in a real browser: headless Chromium, driven by Playwright,
opens the learner's file from disk (``file://…/chat_page.html?server=…&room=…``).
Its server is the course's chat server (``serve_in_background("chat")``), reached
through a small TCP relay that the check can cut, as a network would, and mend.
Python members of the same room (``websockets``' sync client) talk to the page.

Without Chromium the checks are skipped with the reason; under ``CI=true`` they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from course_ws import BackgroundServer, serve_in_background
from course_ws.clients.chat import chat_url
from course_ws.hosting.programs import find_program
from course_ws.tooling.exercises import course_root

pytestmark = pytest.mark.service("chromium")

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
JOIN = 5.0
"""Seconds for the page to load and join its room."""
SHOW = 3.0
"""Seconds for the page to show a message once it was said."""
RECONNECT = 10.0
"""Seconds for the page to come back once the network is mended (its backoff: 0.5, 1, 2 s…)."""
QUIET = 0.5
"""Seconds during which nothing more may appear (a message shown twice)."""
Event = dict[str, Any]


def unavailable(reason: str) -> None:
    """Skip the page's checks, saying why and what to do; fail instead under CI=true."""
    if IN_CI:
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Headless Debian Chromium (never a downloaded browser), for this module's checks."""
    executable = find_program("chromium")
    if executable is None:
        unavailable(
            "Chromium is not installed, and this check runs your page in a real browser: "
            "install it (Debian/Ubuntu: sudo apt-get install chromium), or try your page "
            "by hand (notebook 03, section 5)"
        )
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed: pip install playwright")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def page_file(request: pytest.FixtureRequest) -> Path:
    target = "solutions" if request.config.getoption("--solutions") else "exercises"
    path = course_root() / target / "03_chat" / "chat_page.html"
    assert path.is_file(), f"expected the page at {path}"
    return path


@pytest.fixture(scope="module")
def chat() -> Iterator[BackgroundServer]:
    with serve_in_background("chat", log_level="error") as server:
        yield server


class Relay:
    """A TCP relay from a local port to the chat server, in a thread of its own.

    ``cut()`` drops every relayed connection at once (the page sees 1006) and refuses
    new ones until ``mend()``; ``targets`` keeps each request's target, ``/chat/…?since=…``.
    """

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.cut_off = False
        self.targets: list[str] = []
        self.writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self.run(asyncio.start_server(self.relay, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(5)

    async def relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.transport.abort()
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream
            )
        except OSError:
            writer.transport.abort()
            return
        pair = {writer, upstream_writer}
        self.writers |= pair
        try:
            await asyncio.gather(
                self.pump(reader, upstream_writer, first=True),
                self.pump(upstream_reader, writer),
            )
        finally:
            self.writers -= pair
            for each in pair:
                each.transport.abort()

    async def pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, first: bool = False
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await source.read(65536):
                if first:  # GET /chat/room?user=…&since=… HTTP/1.1
                    self.targets.append(data.split(b"\r\n", 1)[0].decode(errors="replace"))
                    first = False
                sink.write(data)
                await sink.drain()
        for each in (sink,):
            each.transport.abort()

    def cut(self) -> None:
        self.cut_off = True

        def drop_all() -> None:
            for writer in list(self.writers):
                writer.transport.abort()

        self.loop.call_soon_threadsafe(drop_all)

    def mend(self) -> None:
        self.cut_off = False

    def close(self) -> None:
        async def shut() -> None:  # on the relay's own loop: asyncio.Server is not thread-safe
            self.cut_off = True
            self.server.close()
            for writer in list(self.writers):
                writer.transport.abort()

        self.run(shut())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def relay(chat: BackgroundServer) -> Iterator[Relay]:
    relay = Relay(chat.port)
    try:
        yield relay
    finally:
        relay.close()


class Member:
    """A Python member of a room, speaking the chat protocol with ``websockets``' sync client."""

    def __init__(self, websocket: ClientConnection, user: str) -> None:
        self.user = user
        self.websocket = websocket
        self.welcome = self.event(JOIN)

    def event(self, timeout: float) -> Event:
        event: Event = json.loads(self.websocket.recv(timeout=timeout))
        return event

    def say(self, text: str) -> None:
        self.websocket.send(json.dumps({"type": "say", "text": text}))

    def wait_for(self, wanted: Callable[[Event], bool], timeout: float) -> Event | None:
        """The first event that is ``wanted`` within ``timeout`` s, or None."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(TimeoutError, ConnectionClosed):
            while (left := deadline - time.monotonic()) > 0:
                if wanted(event := self.event(left)):
                    return event
        return None


class ChatPage:
    """The learner's page in a browser tab, and what went wrong in its JavaScript."""

    def __init__(self, chromium: Any, page_file: Path, relay: Relay, room: str) -> None:
        self.context = chromium.new_context()
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        server = f"ws://127.0.0.1:{relay.port}"
        self.page.goto(f"{page_file.as_uri()}?server={server}&room={room}&user=page")

    def messages(self) -> list[str]:
        texts: list[str] = self.page.locator("#messages li.message").all_inner_texts()
        return texts

    def wait(self, seconds: float) -> None:
        self.page.wait_for_timeout(seconds * 1000)

    def trouble(self) -> str:
        """What to add to a failure: the page's JavaScript errors, if there were any."""
        return f" (the page's JavaScript raised: {self.errors[-1]})" if self.errors else ""

    def shows(self, said: list[str], within: float) -> list[str] | None:
        """None once the page shows exactly the messages ``said``, in order; else what it shows."""
        deadline = time.monotonic() + within
        while True:
            shown = self.messages()
            if len(shown) == len(said) and all(
                text in line for text, line in zip(said, shown, strict=True)
            ):
                return None
            if time.monotonic() > deadline:
                return shown
            self.wait(0.05)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_page(chromium, page_file: Path, relay: Relay) -> Iterator[Callable[[str], ChatPage]]:
    pages: list[ChatPage] = []

    def open_one(room: str) -> ChatPage:
        pages.append(page := ChatPage(chromium, page_file, relay, room))
        return page

    yield open_one
    for page in pages:
        page.close()


@pytest.fixture
def members(chat: BackgroundServer) -> Iterator[Callable[[str, str], Member]]:
    with contextlib.ExitStack() as connections:

        def join(room: str, user: str) -> Member:
            url = chat_url(chat.url, room, user=user)
            return Member(connections.enter_context(connect(url, open_timeout=JOIN)), user)

        yield join


def joined(member: Member, page: ChatPage, room: str, within: float = JOIN) -> None:
    """``member`` hears the page join ``room`` as ``page``: the page is connected."""
    event = member.wait_for(lambda e: e == {"type": "join", "room": room, "user": "page"}, within)
    assert event is not None, (
        f"opened the page with room={room}&user=page: expected it to join /chat/{room} as "
        f"'page' within {within:g} s (does connect() open a WebSocket to chatUrl(lastId)?)"
        + page.trouble()
    )


def said(member: Member, text: str) -> int:
    """``member`` says ``text``; the id of the message, once the server has published it."""
    member.say(text)
    event = member.wait_for(lambda e: e.get("type") == "message" and e["text"] == text, SHOW)
    assert event is not None, f"{member.user} said {text!r}, and the server did not publish it"
    return int(event["id"])


def test_shows_messages_said_in_the_room(open_page, members):
    """The page shows the messages said in its room, in order"""
    ada = members("shows", "ada")
    page = open_page("shows")
    joined(ada, page, "shows")
    for text in ["hello, page", "ça va? 👋"]:
        said(ada, text)
    shown = page.shows(["hello, page", "ça va? 👋"], SHOW)
    assert shown is None, (
        "ada said 'hello, page' then 'ça va? 👋': expected the page to show them as two "
        f"#messages li.message items, in order, got {shown}{page.trouble()}"
    )


def test_sends_what_is_typed(open_page, members):
    """A message typed in the form and sent reaches the room, and the page shows it"""
    ada = members("sends", "ada")
    page = open_page("sends")
    joined(ada, page, "sends")
    page.page.fill("#text", "hi from the page")
    page.page.click("#send")
    event = ada.wait_for(lambda e: e.get("type") == "message", SHOW)
    expected = {"type": "message", "user": "page", "text": "hi from the page"}
    got = None if event is None else {key: event.get(key) for key in expected}
    assert got == expected, (
        "typed 'hi from the page' and clicked Send: expected ada to receive a message from "
        f"'page' with that text, got {event}{page.trouble()}"
    )
    shown = page.shows(["hi from the page"], SHOW)
    assert shown is None, (
        f"sent 'hi from the page': expected the page to show it, got {shown}{page.trouble()}"
    )
    assert page.page.input_value("#text") == "", "sent a message: expected the input emptied"


def test_reconnects_with_since_and_misses_nothing(open_page, members, relay: Relay):
    """After a drop, the page reconnects with ?since= and shows what it missed, once"""
    ada = members("resume", "ada")
    page = open_page("resume")
    joined(ada, page, "resume")
    last_seen = said(ada, "before the drop")
    shown = page.shows(["before the drop"], SHOW)
    assert shown is None, f"ada said 'before the drop': the page shows {shown}{page.trouble()}"

    relay.cut()  # the network drops the page's connection, and stays down for a moment
    left = ada.wait_for(lambda e: e == {"type": "leave", "room": "resume", "user": "page"}, SHOW)
    assert left is not None, "cut the page's connection: expected the server to see it leave"
    for text in ["missed 1", "missed 2"]:
        said(ada, text)
    page.wait(0.3)  # the page tries again while the network is still down
    relay.mend()

    joined(ada, page, "resume", within=RECONNECT)
    target = relay.targets[-1]
    query = parse_qs(urlsplit(target.split(" ")[1] if " " in target else target).query)
    assert query.get("since") == [str(last_seen)], (
        f"the page reconnected with {target!r}: expected ?since={last_seen}, the id of the "
        "last message it showed, so that the server replays what it missed"
    )
    expected = ["before the drop", "missed 1", "missed 2"]
    shown = page.shows(expected, SHOW)
    assert shown is None, (
        f"reconnected: expected the page to show {expected}, each once, got {shown}"
        + page.trouble()
    )
    said(ada, "welcome back")
    page.wait(QUIET)
    shown = page.shows([*expected, "welcome back"], SHOW)
    assert shown is None, (
        f"ada said 'welcome back' after the reconnection: the page shows {shown}{page.trouble()}"
    )
