"""RoomHistory: bounded in messages and in bytes."""

from __future__ import annotations

import pytest

from course_ws.chat.history import RoomHistory
from course_ws.chat.protocol import Message


def message(number: int, text: str = "hi") -> Message:
    return Message(number, "lobby", "ada", text, 0.0)


def test_since_returns_what_is_newer():
    history = RoomHistory(maxlen=3)
    for number in range(1, 6):
        history.append(message(number))
    assert [m.id for m in history.since(0)] == [3, 4, 5]
    assert [m.id for m in history.since(3)] == [4, 5]
    assert history.since(5) == []
    assert history.last_id == 5


def test_ids_must_increase():
    history = RoomHistory()
    history.append(message(2))
    with pytest.raises(ValueError, match="not above"):
        history.append(message(2))


def test_history_is_bounded_in_bytes():
    emoji = "😀" * 4096  # 16 KiB in UTF-8
    history = RoomHistory(maxlen=1000, max_bytes=100_000)
    for number in range(1, 1001):
        history.append(message(number, emoji))
    assert history.bytes <= 100_000
    assert len(history) == 100_000 // message(1, emoji).size
    assert history.bytes == sum(m.size for m in history.since(0))


def test_one_message_over_the_byte_bound_is_still_kept():
    history = RoomHistory(maxlen=10, max_bytes=10)
    history.append(message(1, "a long message"))
    assert [m.id for m in history.since(0)] == [1]
