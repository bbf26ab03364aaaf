"""CatchUp: what is sent after a replay, and what is skipped."""

from __future__ import annotations

import pytest

from course_ws.chat.catchup import CatchUp


def drain(catch_up: CatchUp, last_id: int) -> list[str]:
    sent = []
    while (event := catch_up.after(last_id)) is not None:
        sent.append(event)
    return sent


def test_messages_in_the_replay_are_skipped_and_newer_ones_sent_in_order():
    catch_up = CatchUp()
    catch_up.deliver("m4", 4)
    catch_up.deliver("join", None)
    catch_up.deliver("m5", 5)
    catch_up.deliver("m6", 6)
    assert drain(catch_up, last_id=5) == ["join", "m6"]


def test_events_arriving_while_sending_are_sent_too():
    catch_up = CatchUp()
    catch_up.deliver("m2", 2)
    assert catch_up.after(1) == "m2"
    catch_up.deliver("m3", 3)  # arrived while "m2" was being sent
    assert drain(catch_up, 1) == ["m3"]


def test_two_buffers_with_the_same_content_are_different_buffers():
    first, second = CatchUp(), CatchUp()
    assert first != second
    buffers = {first, second}
    buffers.discard(CatchUp())
    assert len(buffers) == 2
    buffers.discard(second)
    assert buffers == {first}


def test_a_member_that_falls_too_far_behind_during_its_replay_is_told():
    catch_up = CatchUp(max_events=3)
    for number in range(1, 10):
        catch_up.deliver(f"m{number}", number)
    assert len(catch_up.buffered) <= 3
    with pytest.raises(OverflowError):
        catch_up.after(0)
