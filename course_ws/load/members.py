"""One client process of a load run: its share of the members, their sends, what they saw.

A process opens its members (chat clients, each bound to its source address),
then on the parent's word says its share of the messages on a schedule, and
records for every member what reached it: each message id (to find losses and
duplicates later), and, for the run's own messages, how long they took.

Latency is measured from the send time the sender writes into the message's
text to the moment a member reads it, both with :func:`time.time`: every client
process runs on this one machine and reads the same clock, so the difference
is a true delay. (The server's ``ts`` is its own clock at acceptance, which
would leave out the sender's half of the trip; across machines neither would
do without synchronized clocks.)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection

from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws.bench.crowd import CONNECT_CONCURRENCY
from course_ws.clients.chat import ChatClient
from course_ws.clients.waiting import wait_until

RESERVOIR = 200_000
"""Latencies kept per process; beyond, a uniform random sample of this many (reservoir sampling)."""
SETTLE_TIMEOUT = 10.0
"""Seconds a process waits for its own last messages to come back, or for the last deliveries."""
QUIET = 0.5
"""Seconds without a delivery after which the last deliveries are taken to have arrived."""
PROGRESS_EVERY = 0.25
CLOSE_TIMEOUT = 10.0


@dataclass(frozen=True)
class Share:
    """What the parent asks of one process: its clients as (number, room, source address)."""

    url: str
    clients: list[tuple[int, str, str | None]]
    rate: float
    duration: float
    tag: str
    seed: int | None
    connect_timeout: float


@dataclass
class MemberTally:
    """What one member saw: ids above ``base_id`` (its welcome's ``last_id``), once each or not."""

    room: str
    base_id: int
    distinct: int = 0
    top_id: int = 0
    duplicates: int = 0
    close_code: int | None = None
    """The close code if the connection ended during the run (1006: no close frame)."""


@dataclass
class ProcessResult:
    """Everything one process measured, sent to the parent once."""

    connect_times: list[float] = field(default_factory=list)
    connect_failures: Counter[str] = field(default_factory=Counter)
    members: list[MemberTally] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    timed: int = 0
    """Deliveries of the run's own messages (``latencies`` may be a sample of them)."""
    sent: int = 0
    echoed: int = 0
    """Messages whose sender received them back: the server accepted them."""
    refused: Counter[str] = field(default_factory=Counter)


def failure_reason(exc: BaseException) -> str:
    """A short name for why a connection failed: ``HTTP 429``, ``ECONNREFUSED``, ``timeout``."""
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    if isinstance(exc, ConnectionClosed):
        return f"closed {exc.rcvd.code if exc.rcvd else 1006} before the welcome"
    return type(exc).__name__


class Member:
    """A connected client and its tally; :meth:`listen` reads until the connection ends."""

    def __init__(self, number: int, client: ChatClient, process: LoadProcess) -> None:
        self.number = number
        self.client = client
        self.process = process
        self.tally = MemberTally(str(client.welcome["room"]), int(client.welcome["last_id"]))
        self.seen: set[int] = set()

    async def listen(self) -> None:
        websocket = self.client.websocket
        with contextlib.suppress(ConnectionClosed):
            async for frame in websocket:
                self.process.received(self, frame)
        if not self.process.closing:
            self.tally.close_code = websocket.close_code or 1006

    def count(self, message_id: int) -> None:
        if message_id <= self.tally.base_id:
            return
        if message_id in self.seen:
            self.tally.duplicates += 1
        else:
            self.seen.add(message_id)
            self.tally.distinct += 1
            self.tally.top_id = max(self.tally.top_id, message_id)


class LoadProcess:
    """The members of one process and what they measured."""

    def __init__(self, share: Share) -> None:
        self.share = share
        self.result = ProcessResult()
        self.members: list[Member] = []
        self.listeners: list[asyncio.Task[None]] = []
        self.closing = False
        self.last_delivery = time.monotonic()
        self.rng = random.Random(share.seed)

    # -- connecting -------------------------------------------------------------

    async def connect_all(self) -> None:
        """Open every member, ``CONNECT_CONCURRENCY`` handshakes at a time, within the deadline."""
        semaphore = asyncio.Semaphore(CONNECT_CONCURRENCY)
        openings = [
            asyncio.create_task(self._open(semaphore, *client)) for client in self.share.clients
        ]
        _, pending = await asyncio.wait(openings, timeout=self.share.connect_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        self.result.connect_failures["timeout"] += len(pending)

    async def _open(
        self, semaphore: asyncio.Semaphore, number: int, room: str, address: str | None
    ) -> None:
        async with semaphore:
            started = time.perf_counter()
            try:
                client = await ChatClient.connect(
                    self.share.url,
                    room,
                    user=f"load{number}",
                    timeout=self.share.connect_timeout,
                    local_addr=(address, 0) if address else None,
                    compression=None,
                    open_timeout=self.share.connect_timeout,
                )
            except Exception as exc:  # refused, reset, timed out, no welcome: counted by reason
                self.result.connect_failures[failure_reason(exc)] += 1
                return
            self.result.connect_times.append(time.perf_counter() - started)
            member = Member(number, client, self)
            self.members.append(member)
            # Read at once, not once everyone is in: unread join events fill websockets'
            # max_queue (16), the client stops reading its socket, its pongs stop, and the
            # server's keepalive closes it with 1011 (5,948 of 10,000 members, measured).
            self.listeners.append(asyncio.create_task(member.listen()))

    # -- receiving --------------------------------------------------------------

    def received(self, member: Member, frame: str | bytes) -> None:
        """Count one frame that reached ``member``."""
        try:
            event = json.loads(frame)
            kind = event["type"]
        except (ValueError, KeyError, TypeError):
            return
        if kind == "error" and event.get("code"):
            self.result.refused[str(event["code"])] += 1
        if kind != "message":
            return
        now = time.time()
        self.last_delivery = time.monotonic()
        member.count(int(event["id"]))
        try:
            text = json.loads(event["text"])
            if text["run"] != self.share.tag:
                return
            latency, sender = now - float(text["sent"]), int(text["from"])
        except (ValueError, KeyError, TypeError):
            return  # someone else's message: counted by id, not timed
        self._keep_latency(latency)
        if sender == member.number:
            self.result.echoed += 1

    def _keep_latency(self, latency: float) -> None:
        """Algorithm R: after ``RESERVOIR`` values, each new one replaces a random kept one
        with the probability that keeps the sample uniform."""
        self.result.timed += 1
        if len(self.result.latencies) < RESERVOIR:
            self.result.latencies.append(latency)
        else:
            slot = self.rng.randrange(self.result.timed)
            if slot < RESERVOIR:
                self.result.latencies[slot] = latency

    # -- sending ----------------------------------------------------------------

    async def send_all(self, start_at: float) -> None:
        """Say ``rate`` messages per second for ``duration`` seconds from ``start_at`` (wall clock).

        Message *k* is due at ``(k + u) / rate`` seconds, ``u`` uniform in
        [-0.5, 0.5): the average rate is exact, and the sends do not beat in step
        with other processes' or the server's timers. Senders take turns.
        """
        loop = asyncio.get_running_loop()
        start = loop.time() + max(0.0, start_at - time.time())
        rate, duration = self.share.rate, self.share.duration
        if rate <= 0 or not self.members:
            await asyncio.sleep(max(0.0, start + duration - loop.time()))
            return
        for k in range(int(rate * duration + 0.5)):
            due = start + max(0.0, (k + self.rng.uniform(-0.5, 0.5)) / rate)
            await asyncio.sleep(max(0.0, due - loop.time()))
            member = self.members[k % len(self.members)]
            text = json.dumps({"run": self.share.tag, "from": member.number, "sent": time.time()})
            with contextlib.suppress(ConnectionClosed):
                await member.client.say(text)
                self.result.sent += 1

    async def settle(self) -> None:
        """Wait until every message sent came back to its sender or was refused (bounded)."""
        result = self.result
        with contextlib.suppress(TimeoutError):
            await wait_until(
                lambda: result.echoed + result.refused.total() >= result.sent,
                within=SETTLE_TIMEOUT,
                interval=0.02,
            )

    async def quiet(self) -> None:
        """Wait until no message has arrived for ``QUIET`` seconds (bounded)."""
        with contextlib.suppress(TimeoutError):
            await wait_until(
                lambda: time.monotonic() - self.last_delivery >= QUIET,
                within=SETTLE_TIMEOUT,
                interval=0.05,
            )

    # -- ending -----------------------------------------------------------------

    def finish(self) -> ProcessResult:
        """The result, with every member's tally, taken while the connections are still open."""
        self.closing = True
        self.result.members = [member.tally for member in self.members]
        return self.result

    async def close_all(self) -> None:
        """Close every connection with 1000 (abort what has not closed after ``CLOSE_TIMEOUT``)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.gather(*(member.client.close() for member in self.members))
        for member in self.members:
            member.client.websocket.transport.abort()
        await asyncio.gather(*self.listeners, return_exceptions=True)

    async def report_progress(self, pipe: Connection) -> None:
        """Tell the parent, every ``PROGRESS_EVERY`` seconds, how far this process got."""
        while True:
            failed = self.result.connect_failures.total()
            counts = (len(self.members) + failed, self.result.sent, self.result.timed)
            pipe.send(("progress", *counts))
            await asyncio.sleep(PROGRESS_EVERY)


async def _main(pipe: Connection, share: Share) -> None:
    process = LoadProcess(share)
    reporter = asyncio.create_task(process.report_progress(pipe))
    try:
        await process.connect_all()
        pipe.send(("connected", len(process.members)))
        _, start_at = await asyncio.to_thread(pipe.recv)
        await process.send_all(start_at)
        await process.settle()
        pipe.send(("sent", process.result.sent))
        await asyncio.to_thread(pipe.recv)  # every process has sent: take the last deliveries
        await process.quiet()
        reporter.cancel()
        pipe.send(("result", process.finish()))
    finally:
        reporter.cancel()
        await process.close_all()


def process_main(pipe: Connection, share: Share) -> None:
    """The entry point of a client process (started with the ``spawn`` method)."""
    asyncio.run(_main(pipe, share))
