"""The fan-out and memory benchmarks run end to end at a tiny size (no timing is asserted)."""

from __future__ import annotations

from course_ws.bench import fanout, memory
from course_ws.fanout.strategies import STRATEGIES

TINY = fanout.Settings(sizes=(20,), messages=3, interval=0.02, payload=100, deadline=2.0)


async def test_fanout_benchmark_measures_every_strategy_and_the_chat_server():
    report = await fanout.measure(TINY)
    rows = {(row.strategy, row.stalled): row for row in report.strategies}
    assert set(rows) == {(name, stalled) for name in STRATEGIES for stalled in (False, True)}
    for (name, stalled), row in rows.items():
        if name == "sequential" and stalled:
            assert row.stuck, "the sequential loop waits for the stalled client"
        else:
            assert len(row.latencies) == 20 * 3, (name, stalled)
    assert rows["bounded", True].dropped == 1
    assert rows["queues", True].dropped == 0, "3 messages do not fill a queue of 64"
    assert [row.stalled for row in report.chat] == [False, True]
    for row in report.chat:
        assert len(row.chat_fanout) == 3
        assert len(row.bare_broadcast) == 3
        assert len(row.latencies) == 20 * 3
    text = str(report)
    assert "strategy" in text
    assert "broadcast p50" in text


async def test_memory_benchmark_measures_every_configuration():
    report = await memory.measure(100)
    assert list(report.per_connection) == [*memory.CONFIGS, memory.CHAT]
    for name, size in report.per_connection.items():
        assert 1024 < size < 1024 * 1024, (name, size)
    assert "KiB per connection" in str(report)
