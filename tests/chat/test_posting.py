"""Posting into a room over HTTP, decided without I/O: ``ChatService.post`` and its parts."""

from __future__ import annotations

import json
from collections.abc import Collection

import pytest

from course_ws.chat.brokers import open_broker
from course_ws.chat.protocol import MAX_POST_BYTES, MAX_TEXT, ChatError, parse_post
from course_ws.chat.ratelimit import AddressLimits, PerAddress
from course_ws.chat.service import ChatService, Posted, posting_room
from course_ws.options import ServeOptions

JSON = "application/json"


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def service(**options: object) -> tuple[ChatService[object], list[str]]:
    delivered: list[str] = []

    class Recording:
        def __call__(self, members: Collection[object], event: str) -> None:
            delivered.append(event)

        def close(self, members: Collection[object], code: int, reason: str) -> None:
            raise AssertionError("posting closes no member")

    return ChatService(open_broker("memory://"), Recording(), ServeOptions(**options)), delivered  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "room"),
    [
        ("/rooms/lobby/messages", "lobby"),
        ("/rooms//messages", ""),
        ("/rooms/no room/messages", "no room"),
        ("/rooms/lobby/messages/", None),
        ("/rooms/a/b/messages", None),
        ("/chat/lobby", None),
    ],
)
def test_posting_room_reads_the_path_and_leaves_the_name_to_the_service(
    path: str, room: str | None
) -> None:
    assert posting_room(path) == room


def test_parse_post_keeps_the_say_rules() -> None:
    post = parse_post(body(user="alice", text="  hi  "))
    assert (post.user, post.text) == ("alice", "hi")
    for bad in (
        b"{",
        b"[]",
        body(user="alice"),
        body(user="a b", text="hi"),
        body(user="alice", text=" "),
        body(user="alice", text="x" * (MAX_TEXT + 1)),
        body(user="alice", text="hi", extra=1),
        body(user=1, text="hi"),
    ):
        with pytest.raises(ChatError):
            parse_post(bad)


async def test_a_post_is_stored_and_published() -> None:
    chat, _ = service()
    first = await chat.post("lobby", body(user="hook", text="one"), "10.0.0.1", JSON)
    second = await chat.post("lobby", body(user="hook", text="two"), "10.0.0.1", JSON)
    assert isinstance(first, Posted)
    assert isinstance(second, Posted)
    assert (first.status, json.loads(second.body)) == (
        201,
        {"type": "posted", "room": "lobby", "id": 2},
    )
    last_id, history = await chat.broker.store.replay("lobby", 0)
    assert (last_id, [m.text for m in history]) == (2, ["one", "two"])
    assert chat.metrics.messages_published._value.get() == 2
    await chat.aclose()


@pytest.mark.parametrize(
    ("room", "raw", "content_type", "status"),
    [
        ("lobby", body(user="a", text="hi"), "text/plain", 415),
        ("lobby", body(user="a", text="hi"), None, 415),
        ("lobby", b"x" * (MAX_POST_BYTES + 1), JSON, 413),
        ("lobby", b"{", JSON, 400),
        ("no room", body(user="a", text="hi"), JSON, 404),
        ("x" * 65, body(user="a", text="hi"), "application/json; charset=utf-8", 404),
    ],
)
async def test_a_bad_post_is_refused_and_counted(
    room: str, raw: bytes, content_type: str | None, status: int
) -> None:
    chat, delivered = service()
    refusal = await chat.post(room, raw, "10.0.0.1", content_type)
    assert not isinstance(refusal, Posted)
    assert refusal.status == status
    assert delivered == []
    counted = chat.metrics.posts_refused.labels(status=str(status))._value.get()
    assert counted == 1
    await chat.aclose()


async def test_posts_share_the_message_rate_of_their_address() -> None:
    chat, _ = service(message_rate=0.001, message_burst=2)
    statuses = [
        (await chat.post("lobby", body(user="a", text="hi"), address, JSON)).status
        for address in ("10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2")
    ]
    assert statuses == [201, 201, 429, 201]
    await chat.aclose()


def test_message_without_a_connection_takes_from_the_bucket() -> None:
    addresses = PerAddress(AddressLimits(1.0, 1, 1.0, 1, 1), clock=lambda: 0.0)
    assert addresses.message("10.0.0.1") is True
    assert addresses.message("10.0.0.1") is False
