"""The chat page in headless Chromium against every chat server: two people chat, the server
restarts, nothing is lost."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

COURSE_WS = str(Path(sys.executable).with_name("course-ws"))
WAIT = 15_000  # ms: the page's backoff tops out at 10 s
CHAT_SERVERS = ["chat", "asgi", "starlette", "fastapi", "channels"]
"""Every server of the catalogue that serves the chat page."""
SCREENSHOTS = os.environ.get("COURSE_WS_SCREENSHOTS")  # a folder, to look at the pages


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ChatProcess:
    """``course-ws serve NAME`` on a fixed port, which can be restarted on the same port."""

    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.port = port
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [COURSE_WS, "serve", self.name, "--port", str(self.port), "--log-level", "warning"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        assert "listening on" in self.process.stdout.readline()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            assert self.process.wait(10) == 0


@pytest.fixture(params=CHAT_SERVERS)
def chat(request: pytest.FixtureRequest) -> Iterator[ChatProcess]:
    server = ChatProcess(request.param, free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def messages(page: Page):
    return page.locator("#messages li.message")


def say(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.click("#send")


@pytest.mark.service("chromium")
def test_two_pages_chat_and_one_catches_up_after_a_restart(browser, chat):
    base = f"http://127.0.0.1:{chat.port}/?room=lobby"
    ada_context, bob_context = browser.new_context(), browser.new_context()
    ada, bob = ada_context.new_page(), bob_context.new_page()
    try:
        ada.goto(base + "&user=ada")
        expect(ada.locator("#state")).to_have_attribute("data-state", "open", timeout=WAIT)
        bob.goto(base + "&user=bob")
        expect(bob.locator("#state")).to_have_attribute("data-state", "open", timeout=WAIT)
        expect(ada.locator("#members li")).to_have_text(["ada", "bob"])

        say(ada, "hello bob")
        expect(messages(bob)).to_have_text(["adahello bob"])
        say(bob, "hi ada")
        expect(messages(ada)).to_have_text(["adahello bob", "bobhi ada"])

        # The server restarts while bob's network is down: ada is back first and speaks.
        bob_context.set_offline(True)
        chat.stop()
        expect(ada.locator("#state")).to_have_attribute("data-state", "reconnecting")
        expect(bob.locator("#state")).to_have_attribute("data-state", "reconnecting")
        chat.start()
        expect(ada.locator("#state")).to_have_attribute("data-state", "open", timeout=WAIT)
        say(ada, "did you miss this?")
        expect(messages(ada)).to_have_count(3)
        bob.wait_for_timeout(1000)  # long enough for a retry, were bob online
        expect(messages(bob)).to_have_count(2)

        bob_context.set_offline(False)  # bob resumes with ?since= and gets what he missed
        expect(bob.locator("#state")).to_have_attribute("data-state", "open", timeout=WAIT)
        expect(messages(bob)).to_have_text(["adahello bob", "bobhi ada", "adadid you miss this?"])
        expect(bob.locator("#messages li.notice").last).to_have_text("bob joined")
        expect(ada.locator("#members li")).to_have_text(["ada", "bob"])
        if SCREENSHOTS:
            ada.screenshot(path=f"{SCREENSHOTS}/{chat.name}-ada.png")
            bob.screenshot(path=f"{SCREENSHOTS}/{chat.name}-bob.png")
    finally:
        ada_context.close()
        bob_context.close()
