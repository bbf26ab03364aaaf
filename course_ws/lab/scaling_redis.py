"""Ids in order across processes: two steps (``INCR``, then ``PUBLISH``) against one script.

A room's id must come from one counter that every worker shares, and the
message must be published after it gets its id. Done in two commands, two
workers can interleave: worker A gets id 7, worker B gets id 8, and B's
``PUBLISH`` reaches Redis before A's, so every subscriber receives 8 before 7.
The course's Redis broker does both in one Lua script
(:data:`course_ws.chat.brokers.redis.APPEND`), which Redis runs atomically:
ids are published in the order they are given.

:func:`publish_order` measures both: ``messages`` concurrent publishers over
two connections (each connection is what one worker process would hold),
and one subscriber that checks the order in which the ids arrive.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

import redis.asyncio

from course_ws.chat.brokers.redis import RedisStore, channel, command_client

TWO_STEP_COUNTER = "course-ws:demo:two-step:id"
TWO_STEP_CHANNEL = "course-ws:demo:two-step"
SETTLE = 0.3
"""Seconds the subscriber waits for more once nothing arrives."""


@dataclass(frozen=True)
class OrderReport:
    """The ids one subscriber received, in the order it received them."""

    how: str
    received: list[int]

    @property
    def inversions(self) -> int:
        """How often an id arrived right after a larger one."""
        return sum(1 for a, b in itertools.pairwise(self.received) if b < a)

    @property
    def in_order(self) -> bool:
        return self.inversions == 0

    def __str__(self) -> str:
        verdict = "yes" if self.in_order else f"no, {self.inversions} inversions"
        return f"{self.how}: {len(self.received)} ids received; in id order: {verdict}"


async def _received(pubsub: redis.asyncio.client.PubSub) -> list[str]:
    found = []
    while (message := await pubsub.get_message(timeout=SETTLE)) is not None:
        if message["type"] == "message":
            found.append(str(message["data"]))
    return found


async def publish_order(url: str, *, messages: int = 200, atomic: bool) -> OrderReport:
    """Publish ``messages`` ids concurrently from two connections and read their order.

    ``atomic=False``: ``INCR`` then ``PUBLISH``, two commands. ``atomic=True``: the
    broker's :meth:`~course_ws.chat.brokers.redis.RedisStore.append` (one script),
    in room ``order-demo``.
    """
    subscriber = redis.asyncio.Redis.from_url(url, decode_responses=True)
    pubsub = subscriber.pubsub()
    workers = [command_client(url) for _ in range(2)]
    try:
        target = channel("order-demo") if atomic else TWO_STEP_CHANNEL
        await pubsub.subscribe(target)
        await pubsub.get_message(timeout=5)  # the confirmation: from here on, nothing is missed
        if atomic:
            stores = [RedisStore(worker, url) for worker in workers]
            await asyncio.gather(
                *(
                    stores[n % 2].append("order-demo", "worker", f"line {n}", publish=True)
                    for n in range(messages)
                )
            )
        else:

            async def two_steps(worker: redis.asyncio.Redis) -> None:
                message_id = await worker.incr(TWO_STEP_COUNTER)
                await worker.publish(TWO_STEP_CHANNEL, str(message_id))

            await asyncio.gather(*(two_steps(workers[n % 2]) for n in range(messages)))
        payloads = await _received(pubsub)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await subscriber.aclose()
        for worker in workers:
            await worker.aclose()
    how = "one script (APPEND)" if atomic else "two steps (INCR, PUBLISH)"
    return OrderReport(how, [int(payload.split(" ", 1)[0]) for payload in payloads])
