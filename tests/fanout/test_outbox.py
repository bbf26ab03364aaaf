"""The bounded outbox, without sockets: a fake ``send`` that the test stalls and releases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from course_ws.fanout.bounded import TOO_SLOW
from course_ws.fanout.outbox import MAX_BACKLOG_BYTES, Outbox, OutboxState, message_size

CLOSE_TIMEOUT = 0.05


class FakePeer:
    """``send``, ``close`` and ``abort`` of a connection that the test controls.

    ``send`` waits while ``reading`` is clear, like a transport whose buffer is
    full; ``close`` waits for ``close_done``, like a close frame that waits
    behind that buffer.
    """

    def __init__(self, *, reading: bool = True, close_finishes: bool = True) -> None:
        self.sent: list[str | bytes] = []
        self.reading = asyncio.Event()
        if reading:
            self.reading.set()
        self.close_done = asyncio.Event()
        if close_finishes:
            self.close_done.set()
        self.closes: list[tuple[int, str]] = []
        self.aborts = 0
        self.fail_with: Exception | None = None
        self.close_fails = False

    async def send(self, message: str | bytes) -> None:
        await self.reading.wait()
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append(message)

    async def close(self, code: int, reason: str) -> None:
        self.closes.append((code, reason))
        if self.close_fails:
            raise ConnectionResetError("peer gone")
        await self.close_done.wait()

    def abort(self) -> None:
        self.aborts += 1

    def outbox(self, **limits: int | float | None) -> Outbox[str | bytes]:
        return Outbox(
            self.send,
            close=self.close,
            abort=self.abort,
            close_timeout=CLOSE_TIMEOUT,
            **limits,  # type: ignore[arg-type]
        )


def other_tasks() -> set[asyncio.Task[object]]:
    """Every unfinished task but the test's own."""
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task()}


async def settle() -> None:
    """Let the writer run until it waits again."""
    for _ in range(5):
        await asyncio.sleep(0)


async def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll ``condition`` for ``timeout`` seconds at most."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


async def test_messages_are_sent_in_the_order_offered() -> None:
    peer = FakePeer()
    async with peer.outbox() as outbox:
        for n in range(200):
            assert outbox.offer(f"m{n}")
        await wait_for(lambda: len(peer.sent) == 200)
        assert outbox.backlog_bytes == 0
        assert outbox.backlog_messages == 0
    assert peer.sent == [f"m{n}" for n in range(200)]
    assert outbox.state is OutboxState.CLOSED


async def test_text_and_bytes_both_go_through() -> None:
    peer = FakePeer()
    async with peer.outbox() as outbox:
        outbox.offer("text")
        outbox.offer(b"\x00\x01")
        await wait_for(lambda: len(peer.sent) == 2)
    assert peer.sent == ["text", b"\x00\x01"]


async def test_offer_never_waits_for_a_stalled_send() -> None:
    peer = FakePeer(reading=False)
    async with peer.outbox(max_bytes=None, max_messages=None) as outbox:
        start = time.perf_counter()
        accepted = [outbox.offer("x" * 100) for _ in range(10_000)]
        elapsed = time.perf_counter() - start
        assert all(accepted)
        assert elapsed < 0.5
        await settle()
        assert peer.sent == []
        assert outbox.backlog_messages == 10_000
        assert outbox.backlog_bytes == 1_000_000
        peer.reading.set()
        await wait_for(lambda: len(peer.sent) == 10_000)
        assert outbox.backlog_bytes == 0


async def test_backlog_counts_utf8_bytes_and_shrinks_as_messages_go_out() -> None:
    peer = FakePeer(reading=False)
    async with peer.outbox() as outbox:
        outbox.offer("héllo")  # é is 2 bytes in UTF-8
        outbox.offer(b"abc")
        assert outbox.backlog_bytes == 6 + 3
        assert message_size("héllo") == 6
        peer.reading.set()
        await wait_for(lambda: outbox.backlog_bytes == 0)


async def test_going_over_the_byte_limit_closes_with_1013_exactly_once() -> None:
    peer = FakePeer(reading=False)
    outbox = peer.outbox(max_bytes=1000, max_messages=None)
    for _ in range(10):
        assert outbox.offer("x" * 100)  # exactly at the limit: still fine
    states = [outbox.state]
    assert not outbox.offer("x")  # one byte over
    states.append(outbox.state)
    assert states == [OutboxState.OPEN, OutboxState.TOO_SLOW]
    assert outbox.backlog_bytes == 0  # dropped at once: the memory is what the limit protects
    assert not outbox.offer("more")
    await outbox.aclose()
    assert peer.closes == [(1013, TOO_SLOW)]
    assert peer.aborts == 0  # the close finished in time
    assert peer.sent == []
    assert not outbox.offer("after")
    assert outbox.state is OutboxState.TOO_SLOW


async def test_going_over_the_message_limit_closes_with_1013() -> None:
    peer = FakePeer(reading=False)
    outbox = peer.outbox(max_bytes=None, max_messages=3)
    assert [outbox.offer(".") for _ in range(4)] == [True, True, True, False]
    await outbox.aclose()
    assert peer.closes == [(1013, TOO_SLOW)]


async def test_the_default_limit_is_256_kib() -> None:
    peer = FakePeer(reading=False)
    outbox = peer.outbox()
    chunk = "x" * 1024
    offered = 0
    while outbox.offer(chunk):
        offered += 1
    assert offered * 1024 == MAX_BACKLOG_BYTES == 256 * 1024
    await outbox.aclose()


async def test_nothing_is_written_after_the_close_frame() -> None:
    peer = FakePeer(reading=False, close_finishes=False)
    outbox = peer.outbox(max_messages=2)
    for n in range(3):
        outbox.offer(f"m{n}")
    await settle()
    peer.reading.set()  # the peer reads again, too late: the writer was stopped first
    peer.close_done.set()
    await outbox.aclose()
    assert peer.sent == []
    assert peer.closes == [(1013, TOO_SLOW)]


async def test_a_close_that_hangs_is_aborted_after_the_close_timeout() -> None:
    peer = FakePeer(reading=False, close_finishes=False)
    outbox = peer.outbox(max_messages=1)
    outbox.offer("a")
    start = time.monotonic()
    outbox.offer("b")
    await wait_for(lambda: peer.aborts > 0)
    waited = time.monotonic() - start
    assert CLOSE_TIMEOUT * 0.9 <= waited < CLOSE_TIMEOUT + 0.5
    await outbox.aclose()
    assert peer.aborts == 1
    assert peer.closes == [(1013, TOO_SLOW)]


async def test_end_closes_with_the_code_given_once_and_aborts_a_peer_that_does_not_answer() -> None:
    """What a room uses to have a member resume (1012): the backlog is dropped, nothing
    more is accepted or written, and a close stuck behind a full buffer is aborted."""
    peer = FakePeer(reading=False, close_finishes=False)
    outbox = peer.outbox()
    outbox.offer("stuck in send")
    outbox.offer("waiting")
    outbox.end(1012, "resume")
    outbox.end(1013, "twice")  # a no-op: it is not open any more
    assert outbox.state is OutboxState.CLOSED
    assert outbox.backlog_messages == 0
    assert not outbox.offer("after")
    await outbox.aclose()  # waits for the close, which is aborted after the timeout
    assert peer.closes == [(1012, "resume")]
    assert peer.aborts == 1
    assert peer.sent == []


async def test_a_close_that_fails_is_followed_by_an_abort() -> None:
    peer = FakePeer(reading=False)
    peer.close_fails = True
    outbox = peer.outbox(max_messages=1)
    outbox.offer("a")
    outbox.offer("b")
    await outbox.aclose()
    assert peer.aborts == 1


async def test_aclose_waits_for_a_pending_1013_instead_of_cancelling_it() -> None:
    """On uvicorn the app sees a disconnect as soon as it sends the close frame and
    tidies up at once; the outbox must still abort the stalled connection."""
    peer = FakePeer(reading=False, close_finishes=False)
    outbox = peer.outbox(max_messages=1)
    outbox.offer("a")
    outbox.offer("b")
    await outbox.aclose()
    assert peer.aborts == 1


async def test_cancelling_aclose_during_a_pending_1013_aborts_at_once() -> None:
    peer = FakePeer(reading=False, close_finishes=False)
    outbox = peer.outbox(max_messages=1)
    outbox.offer("a")
    outbox.offer("b")
    before = other_tasks()
    closing = asyncio.create_task(outbox.aclose())
    await settle()
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    assert peer.aborts == 1
    await settle()
    assert not {task for task in before if not task.done()}


async def test_aclose_leaves_no_task_and_drops_the_backlog() -> None:
    before = other_tasks()
    peer = FakePeer(reading=False)
    outbox = peer.outbox()
    for n in range(50):
        outbox.offer(f"m{n}")
    await settle()
    assert other_tasks() - before  # the writer, stuck in send
    await outbox.aclose()
    assert other_tasks() == before
    assert outbox.backlog_bytes == 0
    assert outbox.backlog_messages == 0
    assert not outbox.offer("late")
    await outbox.aclose()  # idempotent
    assert peer.closes == []
    assert peer.aborts == 0


async def test_a_send_that_raises_ends_the_writer_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = other_tasks()
    peer = FakePeer(reading=False)
    outbox = peer.outbox()
    outbox.offer("a")
    outbox.offer("b")
    peer.fail_with = ConnectionResetError("peer gone")
    peer.reading.set()
    await wait_for(lambda: outbox.state is OutboxState.CLOSED)
    await settle()
    assert other_tasks() == before  # the writer ended by itself
    assert outbox.backlog_bytes == 0
    assert not outbox.offer("c")
    await outbox.aclose()
    assert peer.closes == []
    assert not [r for r in caplog.records if r.levelname in {"ERROR", "CRITICAL"}]


async def test_limits_are_checked() -> None:
    peer = FakePeer()
    with pytest.raises(ValueError, match="max_bytes"):
        peer.outbox(max_bytes=0)
    with pytest.raises(ValueError, match="max_messages"):
        peer.outbox(max_messages=0)
    with pytest.raises(ValueError, match="close_timeout"):
        Outbox(peer.send, close=peer.close, abort=peer.abort, close_timeout=0)


async def test_write_now_is_used_while_nothing_waits_and_order_is_kept() -> None:
    """The fast path writes at once while the queue is empty; once it says no, the queue
    takes over, and nothing is written now again until the queue has drained."""
    peer = FakePeer(reading=False)
    written_now: list[str | bytes] = []
    can_write_now = True

    def write_now(message: str | bytes) -> bool:
        if can_write_now:
            written_now.append(message)
        return can_write_now

    outbox = Outbox(
        peer.send,
        close=peer.close,
        abort=peer.abort,
        close_timeout=CLOSE_TIMEOUT,
        write_now=write_now,
    )
    async with outbox:
        assert outbox.offer("a")
        assert outbox.offer("b")
        assert (written_now, outbox.backlog_messages) == (["a", "b"], 0)
        can_write_now = False  # the transport paused
        assert outbox.offer("c")
        can_write_now = True  # it resumed, but "c" waits: "d" must not overtake it
        assert outbox.offer("d")
        assert written_now == ["a", "b"]
        assert outbox.backlog_messages == 2
        peer.reading.set()
        await wait_for(lambda: len(peer.sent) == 2)
        assert outbox.offer("e")  # drained: the fast path again
    assert (written_now, peer.sent) == (["a", "b", "e"], ["c", "d"])
