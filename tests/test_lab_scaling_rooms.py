"""Who hears whom across workers (``course_ws.lab.scaling_rooms``), with the real command line.

- Two workers on ``memory://``: the welcomes sort members into one group per worker, each
  line reaches only its own worker's members, and both workers give out ids 1, 2, 3.
- The same with a real Redis: every line reaches everyone, and the ids are one sequence.
- One process cannot be split in two: :func:`split_by_worker` gives up, bounded.
- :class:`ResumingMember` resumes after a 1001 with ``?since=`` and loses nothing, and
  ``say_and_hear`` says a line again only if it was not accepted.
"""

from __future__ import annotations

import pytest
from required import require_program

from course_ws import serve_in_background
from course_ws.hosting.redis_server import run_redis
from course_ws.lab.scaling_processes import serve_command
from course_ws.lab.scaling_rooms import Exchange, ResumingMember, everyone_says, split_by_worker


def test_an_exchange_counts_what_each_worker_missed():
    exchange = Exchange(workers=[0, 0, 1], heard=[{0, 1}, {0, 1}, {2}], ids=[1, 2, 1])
    assert exchange.owed == 6
    assert exchange.reached == 2
    assert exchange.lost == 4
    assert exchange.reached_on(0) == (2, 4)
    assert exchange.reached_on(1) == (0, 2)
    assert exchange.ids_by_worker() == {0: [1, 2], 1: [1]}
    assert str(exchange).startswith("deliveries: 2 of 6 owed, 4 lost")


async def test_two_workers_on_memory_split_the_room_and_reuse_ids():
    with serve_command("chat", "--workers", "2") as served:
        async with await split_by_worker(served.url, per_worker=3) as groups:
            assert [len(group) for group in groups.groups] == [3, 3]
            exchange = await everyone_says(groups, settle=0.3)
    assert exchange.reached_on(0) == (6, 15)
    assert exchange.reached_on(1) == (6, 15)
    assert exchange.lost == 18
    assert exchange.ids_by_worker() == {0: [1, 2, 3], 1: [1, 2, 3]}


async def test_two_workers_on_redis_hear_everything_with_one_sequence_of_ids(tmp_path):
    require_program("redis-server")
    with (
        run_redis(tmp_path / "redis") as redis_server,
        serve_command("chat", "--workers", "2", "--broker", redis_server.url) as served,
    ):
        assert served.log() == ""  # no warning with a shared broker
        async with await split_by_worker(served.url, per_worker=2) as groups:
            exchange = await everyone_says(groups, settle=0.3)
    assert exchange.lost == 0
    assert exchange.reached == exchange.owed == 12
    assert exchange.ids_by_worker() == {0: [1, 2], 1: [3, 4]}


async def test_one_process_cannot_be_split_in_two():
    with (
        serve_in_background("chat") as server,
        pytest.raises(RuntimeError, match=r"10 connections gave groups of \[2\] members"),
    ):
        await split_by_worker(server.url, per_worker=2, attempts=10)


async def test_a_member_resumes_after_1001_and_misses_nothing(tmp_path):
    require_program("redis-server")
    with run_redis(tmp_path / "redis") as redis_server:
        server = serve_in_background("chat", broker=redis_server.url)
        alice = await ResumingMember(server.url, "alice").join()
        bob = None
        try:
            assert (await alice.say_and_hear("one"))["id"] == 1
            server.stop()  # alice is closed with 1001
            server = serve_in_background("chat", broker=redis_server.url, port=server.port)
            bob = await ResumingMember(server.url, "bob").join()
            assert (await bob.say_and_hear("two"))["id"] == 2  # while alice is away
            # Alice's send fails on the closed connection: she resumes with ?since=1,
            # is replayed "two", says "three" once.
            assert (await alice.say_and_hear("three"))["id"] == 3
            assert alice.ids == [1, 2, 3]
            assert alice.closes == [1001]
            assert (await bob.message())["text"] == "three"
        finally:
            await alice.close()
            if bob is not None:
                await bob.close()
            server.stop()
