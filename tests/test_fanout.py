"""The fan-out strategies behave as course_ws.fanout.strategies's table says (shape, not speed)."""

from __future__ import annotations

import pytest

from course_ws.fanout.strategies import STRATEGIES, Fanout, QueueFanout
from course_ws.lab.fanout import run_fanout

MESSAGES, SIZE = 50, 8 * 1024  # 400 KiB for the stalled client: past every limit


def strategy(name: str) -> Fanout:
    return QueueFanout(size=16) if name == "queues" else STRATEGIES[name]()


async def run(name: str, stalled: bool):
    return await run_fanout(
        strategy(name), clients=10, messages=MESSAGES, size=SIZE, stalled=stalled, deadline=1.0
    )


@pytest.mark.parametrize("name", STRATEGIES)
async def test_everyone_gets_everything_when_all_read(name):
    result = await run(name, stalled=False)
    assert result.delivered == 1.0, str(result)
    assert result.backlog == 0


async def test_a_stalled_client_stalls_the_sequential_loop_for_everyone():
    result = await run("sequential", stalled=True)
    assert result.delivered < 0.5, str(result)


@pytest.mark.parametrize("name", ["task-per-client", "broadcast"])
async def test_unbounded_strategies_deliver_but_hoard_memory_for_the_stalled_client(name):
    result = await run(name, stalled=True)
    assert result.delivered == 1.0, str(result)
    assert result.backlog > 300 * 1024, str(result)
    assert result.stalled_close is None


@pytest.mark.parametrize("name", ["queues", "bounded"])
async def test_bounded_strategies_deliver_and_drop_the_stalled_client_with_1013(name):
    result = await run(name, stalled=True)
    assert result.delivered == 1.0, str(result)
    assert result.stalled_close == 1013
    assert len(result.log) == 1
    assert result.log[0].startswith("closing ")
