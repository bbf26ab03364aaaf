"""``course_ws.lab.limits_scale``: notebook 06b's fan-out simulation and envelope (no sockets)."""

from __future__ import annotations

import math
import random

import pytest

from course_ws.lab.limits_scale import (
    ROOM_SIZE_CAP,
    Envelope,
    equal_rooms,
    expected_hosts,
    pareto_rooms,
    room_sizes,
    simulate_fanout,
)


def test_room_sizes_hold_exactly_the_connections_and_depend_only_on_the_seed():
    sizes = room_sizes(10_001, pareto_rooms(1.2), random.Random(3))
    assert sum(sizes) == 10_001
    assert all(1 <= size <= ROOM_SIZE_CAP for size in sizes)
    assert sizes == room_sizes(10_001, pareto_rooms(1.2), random.Random(3))
    assert sizes != room_sizes(10_001, pareto_rooms(1.2), random.Random(4))
    assert room_sizes(95, equal_rooms(10), random.Random(0)) == [10] * 9 + [5]


def test_expected_hosts_goes_from_one_member_to_the_whole_fleet():
    assert expected_hosts(1, 20) == pytest.approx(1)
    assert expected_hosts(2, 20) == pytest.approx(2 - 1 / 20)
    assert expected_hosts(10_000, 20) == pytest.approx(20)


def test_deliveries_are_rate_times_the_sum_of_squared_room_sizes():
    cost = simulate_fanout("tens", equal_rooms(10), connections=1_000, hosts=5, rate=0.5)
    assert cost.rooms == 100
    assert cost.messages == pytest.approx(0.5 * 1_000)
    assert cost.deliveries == pytest.approx(0.5 * 100 * 10 * 10)
    assert all(1 <= spread <= 5 for spread in cost.spread)
    assert cost.largest_rooms_share(10) == pytest.approx(0.1)


def test_the_simulated_bus_traffic_matches_the_formula_and_heavy_tails_cost_more():
    equal = simulate_fanout("tens", equal_rooms(10), connections=100_000, hosts=20, seed=1)
    heavy = simulate_fanout("pareto", pareto_rooms(1.2), connections=100_000, hosts=20, seed=1)
    for cost in (equal, heavy):
        assert cost.bus_messages / cost.bus_messages_expected == pytest.approx(1, abs=0.02)
    assert heavy.messages == pytest.approx(equal.messages)
    assert heavy.deliveries > 10 * equal.deliveries
    assert heavy.largest_rooms_share(10) > 0.3 > equal.largest_rooms_share(10)
    again = simulate_fanout("pareto", pareto_rooms(1.2), connections=100_000, hosts=20, seed=1)
    assert (again.sizes, again.spread) == (heavy.sizes, heavy.spread)


def test_the_envelope_takes_the_larger_of_memory_and_cpu():
    envelope = Envelope(
        connections=1_000_000,
        memory_per_connection=20 * 1024,
        deliveries_per_core=10_000,
        deliveries=1_000_000,
        frame_bytes=125,
    )
    assert envelope.memory == 1_000_000 * 20 * 1024
    assert envelope.cores == pytest.approx(100)
    assert envelope.bandwidth_bits == pytest.approx(1e9)
    assert envelope.hosts == math.ceil(100 / (8 * 0.7))  # CPU decides: 18 hosts
    roomy = Envelope(1_000_000, 200 * 1024, 10_000, 10_000, 125)
    assert roomy.hosts == math.ceil(roomy.memory / (8 * 2**30))  # memory decides
    assert len(envelope.lines()) == 4
