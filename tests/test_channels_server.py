"""The ``channels`` server: history that survives a restart, consumers under Channels' own test
tool, and members told to resume when the channel layer lost messages.

The conformance, hostile-input, metrics and ASGI suites run against it through
the catalogue; these tests prove what only this server has: the database.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
from pathlib import Path

import httpx
import pytest
from channels.testing import WebsocketCommunicator

from course_ws.chat.protocol import Message
from course_ws.clients.chat import ChatClient
from course_ws.clients.probes import COURSE_WS, closed_with, fresh_room
from course_ws.hosting.catalogue import CATALOGUE
from course_ws.options import ServeOptions
from course_ws.servers._channels.settings import configure

configure(ServeOptions().database)  # the process's one database (see test_channels_store.py)

from course_ws.servers._channels.asgi import application  # noqa: E402
from course_ws.servers._channels.bus import EVENT_TYPE, group_for  # noqa: E402
from course_ws.servers._channels.chat import ChannelsChat  # noqa: E402

TIMEOUT = 10.0


def communicator(chat: ChannelsChat, target: str) -> WebsocketCommunicator:
    """Channels' test client on the server's whole app, with the ``Host`` every request has."""
    return WebsocketCommunicator(application(chat), target, headers=[(b"host", b"testserver")])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    """``course-ws serve channels --port PORT --database FILE``, restartable on the same port."""

    def __init__(self, port: int, database: Path) -> None:
        self.port = port
        self.database = database
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self) -> None:
        command = [COURSE_WS, "serve", "channels", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--database", str(self.database)], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        assert "listening on" in self.process.stdout.readline()

    def sigterm(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(TIMEOUT)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT)
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()


def test_channels_is_in_the_catalogue_with_the_asgi_endpoints():
    entry = CATALOGUE["channels"]
    assert entry.stack == "Django Channels on uvicorn"
    assert "POST /rooms/{room}/messages" in entry.endpoints


async def test_messages_survive_a_restart_with_the_same_ids(tmp_path):
    database = tmp_path / "data" / "chat.sqlite3"  # its folder does not exist yet
    server, room = Served(free_port(), database), fresh_room()
    server.start()
    try:
        async with (
            await ChatClient.connect(server.url, room, user="ada") as ada,
            await ChatClient.connect(server.url, room, user="bob") as bob,
        ):
            for text in ("one", "two", "three"):
                await ada.say(text)
                await ada.next("message")
            async with httpx.AsyncClient(timeout=TIMEOUT) as http:
                posted = await http.post(
                    f"http://127.0.0.1:{server.port}/rooms/{room}/messages",
                    json={"user": "carol", "text": "four"},
                )
            assert posted.status_code == 201
            before = [await bob.next("message") for _ in range(4)]
            assert server.sigterm() == 0
            assert await closed_with(ada) == await closed_with(bob) == 1001
        assert database.exists()
        server.start()  # the same port, the same database
        async with await ChatClient.connect(server.url, room, user="bob", since=0) as bob:
            assert bob.welcome["last_id"] == 4
            after = [await bob.next("message") for _ in range(4)]
            await bob.say("five")
            assert (await bob.next("message"))["id"] == 5
        assert [(m["id"], m["user"], m["text"]) for m in after] == [
            (1, "ada", "one"),
            (2, "ada", "two"),
            (3, "ada", "three"),
            (4, "carol", "four"),
        ]
        assert after == before  # the same events, timestamps included
        assert server.sigterm() == 0
    finally:
        server.kill()


@pytest.fixture
async def chat():
    """A server's chat, started as the lifespan would start it, for Channels' communicator."""
    chat = ChannelsChat(ServeOptions(message_rate=1000.0, message_burst=1000))
    await chat.start()
    try:
        yield chat
    finally:
        await chat.aclose()


async def test_the_chat_consumer_under_websocket_communicator(chat):
    room = fresh_room()
    ada = communicator(chat, f"/chat/{room}?user=ada")
    connected, _ = await ada.connect(timeout=TIMEOUT)
    assert connected
    welcome = await ada.receive_json_from(timeout=TIMEOUT)
    assert (welcome["type"], welcome["user"], welcome["members"]) == ("welcome", "ada", [])
    assert (await ada.receive_json_from(timeout=TIMEOUT))["type"] == "join"
    await ada.send_json_to({"type": "say", "text": "hello"})
    said = await ada.receive_json_from(timeout=TIMEOUT)
    assert (said["type"], said["text"], said["user"]) == ("message", "hello", "ada")
    await ada.send_to(text_data="not json")
    assert (await ada.receive_json_from(timeout=TIMEOUT))["code"] == "bad_json"
    assert await ada.receive_nothing(timeout=0.2)
    await ada.send_to(bytes_data=b"\x00")
    assert await ada.receive_output(timeout=TIMEOUT) == {
        "type": "websocket.close",
        "code": 1003,
        "reason": "chat messages are JSON text frames",
    }
    await ada.disconnect()
    assert chat.service.rooms.members == 0
    assert chat.bus.subscriptions == 0


async def test_a_refusal_without_the_http_response_extension_is_a_close_before_accept(chat):
    """Channels' communicator offers no ``websocket.http.response``: the server falls back."""
    refused = communicator(chat, "/chat/no%20room")
    connected, code = await refused.connect(timeout=TIMEOUT)
    assert (connected, code) == (False, 1008)
    await refused.disconnect()


async def test_the_echo_consumer_echoes_text_and_binary(chat):
    echo = communicator(chat, "/echo")
    assert (await echo.connect(timeout=TIMEOUT))[0]
    await echo.send_to(text_data="hi")
    assert await echo.receive_from(timeout=TIMEOUT) == "hi"
    await echo.send_to(bytes_data=b"\x00\xff")
    assert await echo.receive_from(timeout=TIMEOUT) == b"\x00\xff"
    await echo.disconnect()
    assert chat.metrics.connections._value.get() == 0


async def test_a_gap_on_the_bus_closes_the_rooms_members_with_1012(chat):
    """A message id that jumps means the layer lost messages: members resume from the store."""
    room = fresh_room()
    members = [communicator(chat, f"/chat/{room}?user=m{n}") for n in range(2)]
    for member in members:  # live once welcomed: what is said after that reaches it
        assert (await member.connect(timeout=TIMEOUT))[0]
        assert (await member.receive_json_from(timeout=TIMEOUT))["type"] == "welcome"
    said = await chat.service.broker.publish_message(room, "ada", "arrives")
    for member in members:  # joins, then the message
        while (event := await member.receive_json_from(timeout=TIMEOUT))["type"] != "message":
            pass
        assert event["id"] == said.id
    lost = Message(said.id + 2, room, "ada", "after a lost one", 0.0)  # id + 1 never came
    await chat.layer.group_send(
        group_for(room), {"type": EVENT_TYPE, "event": lost.event, "id": lost.id}
    )
    for member in members:  # not sent: a client that saw it would resume after it
        while (output := await member.receive_output(timeout=TIMEOUT))["type"] != (
            "websocket.close"
        ):
            event = json.loads(output["text"])
            assert event["type"] != "message", f"sent after the gap: {event}"
        assert output["code"] == 1012
        await member.disconnect()
    assert chat.service.rooms.members == 0


def test_servers_started_together_on_a_new_database_all_start(tmp_path: Path) -> None:
    """Django's migrate is not safe against a second process migrating the same new file
    ("table already exists"): the servers take turns, so all three start."""
    database = tmp_path / "new.sqlite3"
    command = [COURSE_WS, "serve", "channels", "--port", "0", "--database", str(database)]
    servers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for _ in range(3)
    ]
    try:
        for server in servers:
            assert server.stdout is not None
            assert "listening on" in server.stdout.readline()
    finally:
        for server in servers:
            server.send_signal(signal.SIGTERM)
        for server in servers:
            assert server.wait(15) == 0
