"""Backoff: the schedule, the jitter's bounds, and fresh sequences for websockets' connect()."""

from __future__ import annotations

import random
from itertools import islice

import pytest

from course_ws.clients import Backoff


def test_without_jitter_delays_grow_by_factor_up_to_the_cap():
    assert Backoff(first=0.1, factor=2, cap=0.5).preview(6) == [0.1, 0.2, 0.4, 0.5, 0.5, 0.5]


def test_a_first_delay_of_zero_retries_at_once_then_stays_at_zero():
    assert Backoff(first=0, cap=1).preview(3) == [0, 0, 0]


def test_jitter_stays_within_its_share_of_each_delay():
    schedule = Backoff(first=1, factor=2, cap=8).preview(10)
    jittered = Backoff(first=1, factor=2, cap=8, jitter=0.5, rng=random.Random(7)).preview(10)
    for planned, drawn in zip(schedule, jittered, strict=True):
        assert planned / 2 <= drawn <= planned
    assert jittered != schedule


def test_a_seeded_rng_reproduces_the_sequence():
    first = Backoff(jitter=1, rng=random.Random(42)).preview()
    again = Backoff(jitter=1, rng=random.Random(42)).preview()
    assert first == again


def test_each_call_starts_a_fresh_sequence():
    backoff = Backoff(first=0.1, factor=3, cap=10)
    one = backoff()
    assert list(islice(one, 2)) == [0.1, pytest.approx(0.3)]
    assert next(backoff()) == 0.1  # a new series of failures starts from the beginning
    assert next(one) == pytest.approx(0.9)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"first": -1}, "first must be 0 or more"),
        ({"factor": 0.5}, "factor must be 1 or more"),
        ({"first": 2, "cap": 1}, "cap (1) must be at least first (2)"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1"),
    ],
)
def test_bad_settings_say_what_is_wrong(settings, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Backoff(**settings)
