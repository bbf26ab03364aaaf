"""Ids in order across connections (``course_ws.lab.scaling_redis``), with a real Redis.

Two steps (``INCR``, then ``PUBLISH``) from 200 concurrent publishers over two connections
let ids arrive out of order; the broker's one script never does. Every id arrives either way.
"""

from __future__ import annotations

from required import require_program

from course_ws.hosting.redis_server import run_redis
from course_ws.lab.scaling_redis import OrderReport, publish_order


def test_an_order_report_counts_inversions():
    assert OrderReport("x", [1, 2, 3]).in_order
    report = OrderReport("two steps", [2, 1, 3, 5, 4])
    assert report.inversions == 2
    assert str(report) == "two steps: 5 ids received; in id order: no, 2 inversions"


async def test_two_steps_reorder_ids_and_one_script_does_not(tmp_path):
    require_program("redis-server")
    with run_redis(tmp_path / "redis") as redis_server:
        two_steps = await publish_order(redis_server.url, messages=200, atomic=False)
        script = await publish_order(redis_server.url, messages=200, atomic=True)
        again = await publish_order(redis_server.url, messages=50, atomic=True)
    assert sorted(two_steps.received) == list(range(1, 201))
    assert not two_steps.in_order  # concurrent INCR/PUBLISH pairs interleave
    assert script.received == list(range(1, 201))
    assert again.received == list(range(201, 251))  # the room's ids go on
