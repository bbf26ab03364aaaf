"""Admission: request target and address in, Admitted or an HTTP refusal out."""

from __future__ import annotations

import pytest

from course_ws.chat.admission import Admitted, Refusal, admit, chat_room


@pytest.mark.parametrize(
    ("target", "room"),
    [
        ("/chat/lobby", "lobby"),
        ("/chat/" + "a" * 64, "a" * 64),
        ("/chat/A-z_9", "A-z_9"),
        ("/chat/", None),
        ("/chat/" + "a" * 65, None),
        ("/chat/a/b", None),
        ("/chat/caf%C3%A9", None),
        ("/chat/café", None),
        ("/echo", None),
        ("/chatroom", None),
    ],
)
def test_the_room_rule(target, room):
    assert chat_room(target) == room


def test_an_admitted_member_gets_what_it_asked_for():
    assert admit("/chat/lobby?user=ada&since=7", "10.0.0.1") == Admitted(
        "lobby", "ada", 7, "10.0.0.1"
    )


def test_a_member_without_a_name_gets_a_guest_name():
    decision = admit("/chat/lobby", "10.0.0.1")
    assert isinstance(decision, Admitted)
    assert decision.user.startswith("guest-")
    assert decision.since is None


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/nowhere", 404),
        ("/chat/" + "x" * 65, 404),
        ("/chat/lobby?user=", 400),
        ("/chat/lobby?user=" + "a" * 33, 400),
        ("/chat/lobby?user=a%20b", 400),
        ("/chat/lobby?since=-1", 400),
        ("/chat/lobby?since=1.5", 400),
        ("/chat/lobby?since=%D9%A3", 400),  # an Arabic-Indic digit: isdigit() but not ASCII
        ("/chat/lobby?since=" + "9" * 5000, 400),
        ("//[", 400),
        ("http://[::1/chat/lobby", 400),
        ("*", 400),
    ],
)
def test_refusals_carry_their_status(target, status):
    decision = admit(target, "10.0.0.1")
    assert isinstance(decision, Refusal)
    assert decision.status == status
    assert decision.text


def test_the_path_is_checked_before_the_query_and_the_query_before_the_address():
    calls: list[str] = []

    def attempt(address: str) -> str | None:
        calls.append(address)
        return "slow down"

    assert admit("/nowhere?user=", "1.2.3.4", attempt) == Refusal(404, admit("/nowhere", "x").text)
    assert admit("/chat/a?user=", "1.2.3.4", attempt).status == 400  # type: ignore[union-attr]
    assert calls == []
    assert admit("/chat/a", "1.2.3.4", attempt) == Refusal(429, "slow down")
    assert calls == ["1.2.3.4"]
