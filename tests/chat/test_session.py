"""MemberSession: a frame in, one action out, without sockets."""

from __future__ import annotations

import json

import pytest

from course_ws.chat.ratelimit import TokenBucket
from course_ws.chat.session import BINARY_REFUSED, Close, CloseCode, MemberSession, Publish, Reply


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def session(rate: float = 10.0, burst: int = 20, clock: FakeClock | None = None) -> MemberSession:
    return MemberSession("lobby", "ada", TokenBucket(rate, burst, clock or FakeClock()))


def error_code(action: object) -> str:
    assert isinstance(action, Reply), action
    event = json.loads(action.event)
    assert event["type"] == "error"
    return str(event["code"])


def test_a_say_is_published_stripped():
    assert session().receive('{"type": "say", "text": "  hi  "}') == Publish("hi")


def test_binary_closes_with_1003():
    action = session().receive(b"\x00\x01")
    assert action == BINARY_REFUSED
    assert isinstance(action, Close)
    assert action.code == CloseCode.UNSUPPORTED_DATA == 1003


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[" * 100_000, "bad_json"),
        ('{"type": "say", "text": ' + "1" * 5000 + "}", "bad_json"),
        ('{"type": "say", "text": [' + "[" * 100_000 + "]}", "bad_json"),
        ("[1, 2]", "bad_message"),
        ('{"type": "shout", "text": "hi"}', "bad_message"),
        ('{"type": "say"}', "bad_message"),
        ('{"type": "say", "text": 5}', "bad_message"),
        ('{"type": "say", "text": "   "}', "bad_message"),
        ('{"type": "say", "text": "hi", "extra": 1}', "bad_message"),
        ('{"type": "say", "text": "' + "x" * 4097 + '"}', "too_long"),
    ],
)
def test_bad_frames_get_an_error_event_and_nothing_is_published(frame, code):
    assert error_code(session().receive(frame)) == code


def test_4096_characters_after_stripping_is_the_limit():
    text = "é" * 4096
    assert session().receive(json.dumps({"type": "say", "text": f" {text} "})) == Publish(text)


def test_the_rate_limit_is_taken_before_parsing():
    clock = FakeClock()
    member = session(rate=1.0, burst=2, clock=clock)
    assert error_code(member.receive("garbage")) == "bad_json"
    assert error_code(member.receive("garbage")) == "bad_json"
    # The bucket is empty: even a valid message is refused, and garbage costs no parse.
    assert error_code(member.receive('{"type": "say", "text": "hi"}')) == "rate_limited"
    assert error_code(member.receive("garbage")) == "rate_limited"
    clock.now += 1.0
    assert member.receive('{"type": "say", "text": "hi"}') == Publish("hi")


def test_members_sharing_a_bucket_share_the_limit():
    bucket = TokenBucket(1.0, 1, FakeClock())
    first = MemberSession("lobby", "ada", bucket)
    second = MemberSession("lobby", "ada", bucket)
    assert first.receive('{"type": "say", "text": "a"}') == Publish("a")
    assert error_code(second.receive('{"type": "say", "text": "b"}')) == "rate_limited"
