"""The chat protocol of DESIGN.md, checked over real sockets against every chat server.

Each test uses fresh room names, so tests share one server per module without
seeing each other. Events are checked field by field and type by type: a server
that sends something close to the protocol does not pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws import serve_in_background
from course_ws.clients.chat import ChatClient, Event, chat_url
from course_ws.clients.raw import RawClient
from course_ws.lab.fanout import stalled_client
from course_ws.rfc6455 import Opcode

SCHEMAS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "welcome": {
        "type": str,
        "room": str,
        "user": str,
        "last_id": int,
        "members": (list, type(None)),
    },
    "message": {"type": str, "id": int, "room": str, "user": str, "text": str, "ts": (int, float)},
    "join": {"type": str, "room": str, "user": str},
    "leave": {"type": str, "room": str, "user": str},
    "error": {"type": str, "code": str, "detail": str},
}
ERROR_CODES = {"bad_json", "bad_message", "too_long", "rate_limited", "unauthorized"}
USER = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def room() -> str:
    return f"r{uuid.uuid4().hex[:12]}"


def valid(event: Event, kind: str) -> Event:
    """``event`` if it is exactly a ``kind`` event of the protocol: no field missing, none extra."""
    schema = SCHEMAS[kind]
    assert event.get("type") == kind, f"expected a {kind} event, got {event}"
    assert set(event) == set(schema), (
        f"{kind} fields: expected {sorted(schema)}, got {sorted(event)}"
    )
    for field, types in schema.items():
        value = event[field]
        assert isinstance(value, types), f"{kind}.{field}: {value!r}"
        assert not isinstance(value, bool), f"{kind}.{field}: {value!r} is a bool"
    if kind == "error":
        assert event["code"] in ERROR_CODES, event
        assert event["detail"], "an error says what was wrong"
    return event


async def join(server, name: str, **kwargs) -> ChatClient:
    client = await ChatClient.connect(server.url, name, **kwargs)
    valid(client.welcome, "welcome")
    return client


async def silent(client: ChatClient, within: float = 0.2) -> None:
    """Nothing more arrives within ``within`` seconds."""
    try:
        extra = await client.event(timeout=within)
    except TimeoutError:
        return
    pytest.fail(f"unexpected event {extra}")


async def closed_with(client: ChatClient) -> int | None:
    """Read until the server closes the connection; return its close code."""
    try:
        while True:
            await client.event()
    except ConnectionClosed:
        return client.websocket.close_code


# -- connecting --------------------------------------------------------------------------


async def test_welcome_comes_first_with_room_user_and_last_id(server):
    name = room()
    async with await join(server, name, user="ada") as ada:
        assert ada.welcome["room"] == name
        assert ada.welcome["user"] == "ada"
        assert ada.welcome["last_id"] == 0
        assert ada.welcome["members"] == []
        assert valid(await ada.event(), "join") == {"type": "join", "room": name, "user": "ada"}
        await silent(ada)


async def test_a_user_without_a_name_gets_a_valid_generated_one(server):
    async with await join(server, room()) as first, await join(server, room()) as second:
        assert USER.fullmatch(first.user), first.user
        assert first.user != second.user


async def test_welcome_lists_the_members_already_there(server):
    name = room()
    async with (
        await join(server, name, user="ada"),
        await join(server, name, user="ada"),
        await join(server, name, user="bob") as bob,
    ):
        assert Counter(bob.welcome["members"]) == Counter({"ada": 2})


async def test_large_rooms_track_no_presence(server_name, fast):
    """Over the presence limit: members is null and joins and leaves go unannounced."""
    name = room()
    with serve_in_background(server_name, presence_limit=2, **fast) as small:
        async with await join(small, name, user="ada") as ada:
            await ada.next("join")
            async with await join(small, name, user="bob") as bob:
                assert (await ada.next("join"))["user"] == "bob"
                carl = await join(small, name, user="carl")
                assert carl.welcome["members"] is None
                await carl.say("hi from a crowd")
                assert (await ada.event())["type"] == "message", "no join for carl"
                await carl.close()
                await bob.say("carl left quietly")
                assert (await ada.event())["text"] == "carl left quietly", "no leave for carl"
            assert valid(await ada.event(), "leave")["user"] == "bob"


@pytest.mark.parametrize(
    "query", ["user=", "user=a%20b", "user=" + "x" * 33, "since=-1", "since=one", "since=1.5"]
)
async def test_a_bad_query_is_refused_with_400(server, query):
    with pytest.raises(InvalidStatus) as refused:
        await connect(f"{server.url}/chat/{room()}?{query}", open_timeout=2)
    assert refused.value.response.status_code == 400


@pytest.mark.parametrize(
    "path", ["/nope", "/chat", "/chat/", "/chat/a/b", "/chat/bad%20room", "/chat/" + "r" * 65]
)
async def test_unknown_paths_are_404(server, path):
    with pytest.raises(InvalidStatus) as refused:
        await connect(server.url + path, open_timeout=2)
    assert refused.value.response.status_code == 404


async def test_room_names_of_64_characters_are_fine(server):
    name = "R-_9" * 16
    async with await join(server, name) as client:
        assert client.welcome["room"] == name


# -- messages ----------------------------------------------------------------------------


async def test_a_message_reaches_every_member_with_the_same_id(server):
    name = room()
    clients = [await join(server, name, user=f"u{n}") for n in range(3)]
    try:
        await asyncio.sleep(0.1)
        for client in clients:  # drain the joins
            while (await client.event())["user"] != "u2":
                pass
        before = time.time()
        await clients[0].say("  hello, room  ")
        received = [valid(await client.next("message"), "message") for client in clients]
        assert {json.dumps(event, sort_keys=True) for event in received} == {
            json.dumps(received[0], sort_keys=True)
        }, "every member receives the same event"
        event = received[0]
        assert (event["room"], event["user"], event["text"]) == (name, "u0", "hello, room")
        assert event["id"] == 1
        assert before - 5 < event["ts"] < time.time() + 5, "ts is the server's time in seconds"
    finally:
        for client in clients:
            await client.close()


async def test_ids_strictly_increase_per_room(server):
    first, second = room(), room()
    async with await join(server, first) as a, await join(server, second) as b:
        for n in range(5):
            await a.say(f"a{n}")
            await b.say(f"b{n}")
        ids_a = [(await a.next("message"))["id"] for _ in range(5)]
        ids_b = [(await b.next("message"))["id"] for _ in range(5)]
    assert ids_a == sorted(set(ids_a)), ids_a
    assert ids_b == sorted(set(ids_b)), ids_b


async def test_rooms_are_isolated(server):
    async with await join(server, room()) as a, await join(server, room()) as b:
        await a.next("join")
        await b.next("join")
        await a.say("only for a's room")
        assert (await a.next("message"))["text"] == "only for a's room"
        await silent(b)


async def test_join_and_leave_are_announced(server):
    name = room()
    async with await join(server, name, user="ada") as ada:
        await ada.next("join")
        bob = await join(server, name, user="bob")
        assert valid(await ada.event(), "join") == {"type": "join", "room": name, "user": "bob"}
        assert (await bob.event())["type"] == "join"
        await bob.close()
        assert valid(await ada.event(), "leave") == {"type": "leave", "room": name, "user": "bob"}


async def test_text_is_unicode_both_ways(server):
    async with await join(server, room()) as client:
        await client.say("naïve café – 🚀")
        assert (await client.next("message"))["text"] == "naïve café – 🚀"


# -- errors: the connection stays open ---------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("{", "bad_json"),
        ("[1, 2]", "bad_message"),
        ('"say"', "bad_message"),
        ("{}", "bad_message"),
        ('{"type": "shout", "text": "hi"}', "bad_message"),
        ('{"type": "say"}', "bad_message"),
        ('{"type": "say", "text": 42}', "bad_message"),
        ('{"type": "say", "text": "   "}', "bad_message"),
        ('{"type": "say", "text": "hi", "extra": 1}', "bad_message"),
        (json.dumps({"type": "say", "text": "x" * 4097}), "too_long"),
    ],
)
async def test_a_bad_message_gets_an_error_and_the_connection_stays_open(server, frame, code):
    async with await join(server, room()) as client:
        await client.next("join")
        await client.websocket.send(frame)
        error = valid(await client.event(), "error")
        assert error["code"] == code, error
        await client.say("still here")
        assert (await client.next("message"))["text"] == "still here"


async def test_4096_characters_are_allowed_after_stripping(server):
    async with await join(server, room()) as client:
        await client.say("  " + "x" * 4096 + "  ")
        assert (await client.next("message"))["text"] == "x" * 4096


async def test_a_flood_is_rate_limited_and_the_connection_stays_open(server_name):
    with serve_in_background(server_name, message_rate=2.0, message_burst=3) as strict:
        async with await join(strict, room()) as client:
            await client.next("join")
            for n in range(6):
                await client.say(f"m{n}")
            events = [await client.event() for _ in range(6)]
            kinds = [event["type"] for event in events]
            assert kinds.count("message") == 3, kinds
            assert [valid(e, "error")["code"] for e in events if e["type"] == "error"] == [
                "rate_limited"
            ] * 3
            await asyncio.sleep(0.6)  # one token back at 2 per second
            await client.say("later")
            assert (await client.next("message"))["text"] == "later"


# -- resume ------------------------------------------------------------------------------


async def test_resume_with_since_replays_what_was_missed_then_goes_live(server):
    name = room()
    async with await join(server, name) as talker:
        for n in range(1, 6):
            await talker.say(f"m{n}")
        ids = [(await talker.next("message"))["id"] for _ in range(5)]
        async with await join(server, name, since=ids[1]) as late:
            assert late.welcome["last_id"] == ids[-1]
            replayed = [valid(await late.event(), "message") for _ in range(3)]
            assert [event["text"] for event in replayed] == ["m3", "m4", "m5"]
            assert (await late.event())["type"] == "join"
            await talker.say("live")
            assert (await late.next("message"))["text"] == "live"


async def test_no_since_means_no_replay(server):
    name = room()
    async with await join(server, name) as talker:
        await talker.say("before")
        await talker.next("message")
        async with await join(server, name) as fresh:
            assert fresh.welcome["last_id"] >= 1
            assert (await fresh.event())["type"] == "join"
            await silent(fresh)


async def test_resume_while_others_keep_talking_loses_and_repeats_nothing(server):
    """A reconnect in the middle of a stream of messages sees every id exactly once."""
    name = room()
    total = 300
    async with await join(server, name) as talker, await join(server, name) as reader:

        async def talk() -> None:
            for n in range(total):
                await talker.say(f"m{n}")
                if n % 10 == 0:
                    await asyncio.sleep(0)

        async def listen() -> None:  # the talker reads too, as every client must
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await talker.websocket.recv()

        seen: list[int] = []
        speaking = asyncio.create_task(talk())
        listening = asyncio.create_task(listen())
        while len(seen) < total // 3:
            seen.append((await reader.next("message"))["id"])
        reader.websocket.transport.abort()  # the network drops mid-stream...
        async with await join(server, name, since=seen[-1]) as back:  # ...and we resume
            while len(seen) < total:
                event = await back.event()
                if event["type"] == "message":
                    seen.append(event["id"])
        await speaking
        await talker.close()  # the listener keeps reading, so the close frame gets through
        await listening
    assert seen == list(range(seen[0], seen[0] + total)), "ids are contiguous, none repeated"


async def test_since_beyond_the_last_id_replays_the_whole_history(server):
    """A client from before a restart (its since is above any id here) gets all there is."""
    name = room()
    async with await join(server, name) as talker:
        await talker.say("after the restart")
        await talker.next("message")
        async with await join(server, name, since=10**9) as returning:
            assert (await returning.next("message"))["text"] == "after the restart"


async def test_history_is_bounded(server_name, fast):
    with serve_in_background(server_name, history_size=5, **fast) as small:
        async with await join(small, room()) as talker:
            for n in range(8):
                await talker.say(f"m{n}")
            last = [(await talker.next("message")) for _ in range(8)][-1]
            async with await join(small, talker.welcome["room"], since=0) as late:
                texts = [(await late.next("message"))["text"] for _ in range(5)]
                assert texts == ["m3", "m4", "m5", "m6", "m7"]
                assert late.welcome["last_id"] == last["id"]


# -- close codes -------------------------------------------------------------------------


async def test_binary_frame_on_chat_closes_with_1003(server):
    async with await join(server, room()) as client:
        await client.websocket.send(b"\x00\x01")
        assert await closed_with(client) == 1003


async def test_message_over_max_size_closes_with_1009(server_name, fast):
    with serve_in_background(server_name, max_size=1024, **fast) as small:
        async with await join(small, room()) as client:
            await client.websocket.send(json.dumps({"type": "say", "text": "x" * 2000}))
            assert await closed_with(client) == 1009


def test_invalid_utf8_closes_with_1007(server):
    with RawClient.connect(chat_url(server.url, room())) as client:
        client.send_frame(Opcode.TEXT, b'{"type":"say","text":"\xc3\x28"}')
        frames = []
        while not frames or frames[-1].opcode is not Opcode.CLOSE:
            frames.append(client.recv_frame())
        assert int.from_bytes(frames[-1].payload[:2], "big") == 1007


async def test_a_member_that_stops_reading_is_closed_with_1013(server_name, fast):
    """Its unsent messages are bounded: past the limit it is closed, and may resume later."""
    name = room()
    with serve_in_background(server_name, **fast) as busy:
        stalled = await stalled_client(chat_url(busy.url, name))
        async with await join(busy, name) as talker:
            for _ in range(400):  # 1.6 MB for a member that reads nothing
                await talker.say("x" * 4000)
                await talker.next("message")  # the talker reads, or it would be dropped too
            stalled.transport.resume_reading()
            with contextlib.suppress(ConnectionClosed):  # 1013 is not a clean close
                async with asyncio.timeout(10):
                    async for _ in stalled:
                        pass
            assert stalled.close_code == 1013
            await talker.say("the others carry on")
            assert (await talker.next("message"))["text"] == "the others carry on"


async def test_shutdown_closes_clients_with_1001(server_name, fast):
    with serve_in_background(server_name, **fast) as doomed:
        client = await join(doomed, room())
        await asyncio.to_thread(doomed.stop)
        assert await closed_with(client) == 1001


# -- the other endpoints -----------------------------------------------------------------


def fetch(url: str) -> tuple[int, str, bytes]:
    """GET ``url``: status, content type and body; the connection is closed either way."""
    try:
        response = urllib.request.urlopen(url, timeout=2)
    except urllib.error.HTTPError as error:
        response = error  # an HTTPError is the response, and holds its socket until closed
    with response:
        return response.status, response.headers.get("Content-Type", ""), response.read()


def test_healthz_is_200_ok(server):
    status, _, body = fetch(server.http_url + "/healthz")
    assert (status, body.strip()) == (200, b"ok")


def test_the_page_is_served_at_root(server):
    status, content_type, body = fetch(server.http_url + "/")
    assert status == 200
    assert content_type.startswith("text/html")
    assert b"new WebSocket(" in body


def test_unknown_http_path_is_404(server):
    assert fetch(server.http_url + "/nope")[0] == 404


async def test_echo_endpoint_echoes_text_and_binary(server):
    async with connect(server.url + "/echo") as websocket:
        await websocket.send("text")
        assert await websocket.recv() == "text"
        await websocket.send(b"\x00\xff")
        assert await websocket.recv() == b"\x00\xff"
