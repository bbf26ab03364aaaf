"""The chat's *bus* on a Channels channel layer: one group per room, one channel per process.

:class:`ChannelLayerBus` is the :class:`~course_ws.chat.brokers.base.Bus` of the
``channels`` server. A process with members in a room subscribes to it
**once** (not once per member): a channel of its own
(``await layer.new_channel()``), added to the room's group
(``await layer.group_add(group_for(room), channel)``), and a task that loops on
``await layer.receive(channel)`` and hands each event to the room, whose
fan-out offers it to every local member's outbox. Publishing is one
``group_send`` of ``{"type": "chat.event", "event": ..., "id": ...}``.

What a channel layer does not promise, and what is done about it here:

- **Group names** are ASCII letters, digits, ``-``, ``_`` and ``.``, under
  100 characters: :func:`group_for` maps a room to one, in one place.
- **Group memberships expire** (``group_expiry``: a day on the in-memory
  layer, five minutes on the Redis one, :mod:`.settings`): each subscription
  renews its own membership every half of that.
- **Delivery is at most once**: a channel over its ``capacity`` silently loses
  what is sent to it (``group_send`` swallows ``ChannelFull``). Chat messages
  carry their room's ids, which increase by one, so a subscription that sees
  an id jump knows it lost messages. With the store (the database, which has
  every message *before* it is sent), it reads the missing ones from it, by
  id, and delivers them first, then the one that showed the gap. A message
  that arrives after that, or twice (``channels_redis`` may redeliver), has an
  id already delivered and is dropped. Only when the store no longer has the
  missing ids (trimmed from the history) — or without a store — is the gap
  reported to the subscription's ``resume``, and the room closes its local
  members with 1012 so that they resume with ``?since=``; the message
  after the gap is held back (a client that saw it would resume after it). A
  lost join or leave has no id and shows only with the messages lost around
  it; the members' new welcome then carries the right member list.
- **Several processes publish** (``--broker redis://``): ids are given in the
  database, in one transaction each, but sent by each process on its own, so
  id 8 of one process may reach a third one before id 7 of another. That is
  the same jump, filled from the database the same way — id 7 was committed
  before id 8 was given — with no member closed.
- **The layer may fail** (Redis restarted or unreachable: ``receive``,
  ``group_add`` and ``group_send`` raise). Any failure starts one
  *recovery* for the whole bus: while the layer does not answer, every room
  is caught up from the database at each attempt (local members keep hearing
  each other, and the other processes, within the backoff); attempts are
  spaced by exponential backoff with full jitter; once ``group_add`` works
  again, every subscription re-joins its group (a Redis without persistence
  forgot them), the latest message of each room whose ``group_send`` failed
  is sent again (so that processes that noticed nothing find the jump), and
  every room is caught up once more. A subscription made while the layer is
  down is kept and joins with the others. A message said meanwhile is stored
  and reaches everyone, in id order; a join or leave said meanwhile is lost.
- **The last message of a burst may be the one lost**, and then no later id
  shows the jump. So a room that received messages and then went quiet for
  :data:`SETTLE_AFTER` seconds is compared once with the store (one read),
  and caught up: a member is never stale for longer than that.
- **A subscription starts from the store's last id** (read after joining the
  group), so that two messages that arrive in the wrong order before any
  other are still both delivered.

A member still being welcomed when an event arrives gets it through its
catch-up buffer (:mod:`course_ws.chat.catchup`): the room's events, filled
from the store or not, reach the room one way, in id order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from typing import Any

import redis.exceptions

from course_ws.chat.brokers import Delivery, Resume, Store
from course_ws.chat.brokers.base import Figure
from course_ws.chat.protocol import ROOM_PATTERN

logger = logging.getLogger("course_ws.servers.channels")

GROUP_PREFIX = "course_ws.chat."
EVENT_TYPE = "chat.event"
"""The ``type`` of each event sent to a room's group (a consumer's handler: ``chat_event``)."""
DEFAULT_GROUP_EXPIRY = 86_400
"""Channels' default ``group_expiry``, for a layer that does not say its own."""
BACKOFF_BASE = 0.05
"""Seconds: the first retry of a failed layer waits up to twice this, then doubles."""
BACKOFF_CAP = 2.0
"""Longest wait between two attempts, in seconds; also how stale local members can get
while the layer is down (they are caught up from the database at every attempt)."""
SETTLE_AFTER = 1.0
"""Seconds of quiet after a room's last message before the store is asked whether the layer
dropped anything after it."""
LOST_ON_THE_BUS = "messages were lost on the way here: reconnect with ?since="
"""Why the members of a room whose events the layer lost are closed with 1012."""
LEAVE_TIMEOUT = 2.0
"""Seconds a subscription may take to leave its group when it is cancelled."""
LAYER_ERRORS: tuple[type[Exception], ...] = (OSError, redis.exceptions.RedisError)
"""What a channel layer on a network service raises when it cannot do what was asked."""


def group_for(room: str) -> str:
    """The channel layer group of ``room``: ``course_ws.chat.{room}``.

    A room name (1-64 of ``A-Z a-z 0-9 _ -``) is valid in a group name as it
    is, and the prefix keeps the whole under Channels' 100 characters;
    :class:`ValueError` for anything that is not a room name.
    """
    if not ROOM_PATTERN.fullmatch(room):
        raise ValueError(f"not a room name: {room!r}")
    return GROUP_PREFIX + room


async def stop_tasks(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait until they end, cancelling again any that goes on.

    ``channels_redis``' ``receive`` can return a message to a task that was
    cancelled meanwhile (seen here), which then loops back into ``receive`` and
    would never end: one cancellation is not enough.
    """
    pending = [task for task in tasks if not task.done()]
    while pending:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=0.1)
        pending = [task for task in pending if not task.done()]


def backoff(failures: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    """Seconds to wait after ``failures`` failures in a row: "full jitter", uniform in
    ``[0, min(cap, base * 2**failures)]``, so that processes that lost the same Redis do
    not all come back in the same millisecond."""
    return random.uniform(0, min(cap, base * 2 ** min(failures, 30)))


class LayerSubscription:
    """This process's membership of one room's group, and the task that reads its channel."""

    def __init__(
        self,
        bus: ChannelLayerBus,
        room: str,
        channel: str,
        deliver: Delivery,
        resume: Resume | None = None,
    ) -> None:
        self.bus = bus
        self.room = room
        self.group = group_for(room)
        self.channel = channel
        self.deliver = deliver
        self.resume = resume
        self.last_id: int | None = None
        """The id of the last message delivered; ``None`` before the first (without a store)."""
        self.gaps = 0
        """How many times messages were found missing and could not be filled from the store."""
        self.filled = 0
        """Messages delivered from the store because the layer lost them or had not brought
        them yet."""
        self.duplicates = 0
        """Messages that arrived with an id already delivered, and were dropped."""
        self._lock = asyncio.Lock()
        """One delivery at a time: the receive task, or a recovery catching the room up."""
        self._tasks: list[asyncio.Task[None]] = []
        self._settle: asyncio.TimerHandle | None = None
        self._settling: asyncio.Task[None] | None = None
        self._cancelled = False

    def start(self, renew_every: float) -> None:
        """Start reading the channel, and renewing the group membership."""
        self._tasks = [
            asyncio.create_task(self._receive(), name=f"bus {self.group}"),
            asyncio.create_task(self._renew(renew_every), name=f"renew {self.group}"),
        ]

    async def _receive(self) -> None:
        layer, failures = self.bus.layer, 0
        while not self._cancelled:
            try:
                message = await layer.receive(self.channel)
            except Exception as exc:  # the layer failed (Redis down): the bus recovers
                failures += 1
                await self.bus.layer_failed(exc)
                await asyncio.sleep(backoff(failures - 1))  # a layer that fails at once: no spin
                continue
            failures = 0
            if self._cancelled:
                return
            if message.get("type") != EVENT_TYPE:
                logger.warning("%s: ignored a %r message", self.channel, message.get("type"))
                continue
            try:
                await self._handle(message["event"], message.get("id"))
            except Exception:
                logger.exception("delivering an event of %s failed", self.room)

    async def _handle(self, event: str, message_id: int | None) -> None:
        """Deliver one event from the layer, after whatever the store has before it."""
        async with self._lock:
            if message_id is not None and self.last_id is not None:
                if message_id <= self.last_id:
                    self.duplicates += 1
                    self.bus.duplicates += 1
                    return  # delivered already (filled from the store, or sent twice)
                if message_id > self.last_id + 1 and not await self._fill(message_id - 1):
                    self._gap(message_id)
                    return  # the members resume from the store, where this one is too
            if message_id is not None:
                self.last_id = message_id
                self._settle_later()
            self._deliver(event, message_id)

    def _settle_later(self) -> None:
        """Compare with the store once the room has been quiet for ``settle_after`` seconds."""
        if self.bus.store is None:
            return
        if self._settle is not None:
            self._settle.cancel()
        loop = asyncio.get_running_loop()
        self._settle = loop.call_later(self.bus.settle_after, self._start_settling)

    def _start_settling(self) -> None:
        self._settle = None
        if not self._cancelled and (self._settling is None or self._settling.done()):
            self._settling = asyncio.create_task(self._settle_now(), name=f"settle {self.group}")

    async def _settle_now(self) -> None:
        try:
            await self.catch_up()
        except Exception:
            logger.exception("comparing %s with the database failed", self.room)

    def _deliver(self, event: str, message_id: int | None) -> None:
        try:
            self.deliver(event, message_id)
        except Exception:
            logger.exception("delivering an event of %s failed", self.room)

    async def _fill(self, upto: int | None) -> bool:
        """Deliver the store's messages after :attr:`last_id` (up to ``upto``), in order.

        ``True`` if every id up to ``upto`` was delivered; ``False`` if the store
        does not have them all (or there is no store). Call it holding the lock.
        """
        store, last = self.bus.store, self.last_id
        if store is None or last is None:
            return False
        stored_last, stored = await store.replay(self.room, last)
        if stored_last < last:  # the database went back (replaced?): nothing fills this
            return False
        for message in stored:
            if upto is not None and message.id > upto:
                break
            if message.id != last + 1:
                return False  # trimmed from the history before it reached this process
            self._deliver(message.event, message.id)
            last = self.last_id = message.id
            self.filled += 1
            self.bus.filled += 1
        return upto is None or last == upto

    def _gap(self, resume_after: int) -> None:
        """Report lost messages; the live stream goes on after ``resume_after``."""
        self.gaps += 1
        self.bus.gaps += 1
        logger.warning(
            "%s: messages after %s were lost on the channel layer", self.room, self.last_id
        )
        self.last_id = resume_after
        if self.resume is not None:
            try:
                self.resume(LOST_ON_THE_BUS)
            except Exception:
                logger.exception("resuming the members of %s failed", self.room)

    async def catch_up(self) -> None:
        """Deliver what the store has after the last id delivered (the layer may have lost it)."""
        store = self.bus.store
        if store is None:
            return
        async with self._lock:
            if self.last_id is not None and not await self._fill(None):
                stored_last, _ = await store.replay(self.room, None)
                self._gap(stored_last)

    async def _renew(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.bus.layer.group_add(self.group, self.channel)
            except LAYER_ERRORS as exc:  # the recovery re-joins every group
                self.bus.failed(exc)

    async def cancel(self) -> None:
        """Leave the group and stop reading; idempotent."""
        if self._cancelled:
            return
        self._cancelled = True
        self.bus.forget(self)
        if self._settle is not None:
            self._settle.cancel()
        await stop_tasks([*self._tasks, *([self._settling] if self._settling else [])])
        # A layer that is gone has no group to leave; one that does not answer is not waited for.
        with contextlib.suppress(Exception):
            async with asyncio.timeout(LEAVE_TIMEOUT):
                await self.bus.layer.group_discard(self.group, self.channel)


class ChannelLayerBus:
    """Carries each room's events through a channel layer's groups.

    ``layer`` is a channel layer (``channels.layers.InMemoryChannelLayer``,
    ``channels_redis.core.RedisChannelLayer``) used on this event loop only.
    ``store`` (the ``channels`` server's database) fills lost or late messages
    by id and serves the rooms while the layer is down; without it, a failing
    layer raises. Messages missing that the store cannot give are reported to
    the subscription's ``resume``; ``renew_every`` is how often each
    subscription renews its group membership (default: half the layer's
    ``group_expiry``); ``settle_after``, how long a room must be quiet before
    it is compared with the store.
    """

    def __init__(
        self,
        layer: Any,
        renew_every: float | None = None,
        store: Store | None = None,
        settle_after: float = SETTLE_AFTER,
    ) -> None:
        self.layer = layer
        expiry = getattr(layer, "group_expiry", DEFAULT_GROUP_EXPIRY)
        self.renew_every = renew_every if renew_every is not None else expiry / 2
        self.store = store
        self.settle_after = settle_after
        self.outages = 0
        """Recoveries started: the layer failed that many times (after recovering each time)."""
        self.filled = 0
        """Messages delivered from the store because the layer lost them or had not brought
        them yet (all rooms, since the start)."""
        self.gaps = 0
        """Times messages were missing that the store no longer had (all rooms)."""
        self.duplicates = 0
        """Messages the layer brought twice, dropped (all rooms)."""
        self._subscriptions: set[LayerSubscription] = set()
        self._recovery: asyncio.Task[None] | None = None
        self._failed_again = False
        """A failure was reported while a recovery ran: it goes round once more."""
        self._unsent: set[str] = set()
        """Rooms whose latest message the layer refused: sent again by the recovery."""

    @property
    def subscriptions(self) -> int:
        """Open subscriptions in this process."""
        return len(self._subscriptions)

    def figures(self) -> list[Figure]:
        """The layer's failures and what the store made up for, for ``GET /metrics``."""
        return [
            Figure(
                "course_ws_bus_outages",
                "Times the channel layer failed and the bus recovered from the database",
                lambda: self.outages,
            ),
            Figure(
                "course_ws_bus_caught_up",
                "Messages delivered from the database because the channel layer lost them",
                lambda: self.filled,
            ),
            Figure(
                "course_ws_bus_lost",
                "Gaps the database could no longer fill (the room's members resumed)",
                lambda: self.gaps,
            ),
            Figure(
                "course_ws_bus_duplicates",
                "Messages the channel layer delivered twice, dropped",
                lambda: self.duplicates,
            ),
        ]

    @property
    def recovering(self) -> bool:
        """Whether the layer failed and has not been seen working since."""
        return self._recovery is not None and not self._recovery.done()

    async def publish(self, room: str, event: str, message_id: int | None) -> None:
        """Send ``event`` to every process subscribed to ``room`` (at most once).

        With a store, a layer that fails does not fail the publish: the message
        is stored already, and the recovery delivers it (a join or leave is lost).
        """
        try:
            await self.layer.group_send(
                group_for(room), {"type": EVENT_TYPE, "event": event, "id": message_id}
            )
        except LAYER_ERRORS as exc:
            if self.store is None:
                raise
            if message_id is not None:
                self._unsent.add(room)
            else:
                logger.info("presence in %s lost: the channel layer failed", room)
            self.failed(exc)

    async def subscribe(
        self, room: str, deliver: Delivery, resume: Resume | None = None
    ) -> LayerSubscription:
        """Join ``room``'s group with a channel of this process's own, and read it.

        Once this returns, every later ``group_send`` reaches the channel — or,
        with a store, while the layer is down, every later message is delivered
        from the store.
        """
        channel = await self.layer.new_channel()
        subscription = LayerSubscription(self, room, channel, deliver, resume)
        failure: Exception | None = None
        try:
            await self.layer.group_add(subscription.group, channel)
            if self.store is not None:
                subscription.last_id, _ = await self.store.replay(room, None)
        except LAYER_ERRORS as exc:
            if self.store is None:
                await self._leave_quietly(subscription)
                raise
            failure = exc  # joined by the recovery; served from the store meanwhile
            subscription.last_id, _ = await self.store.replay(room, None)
        except BaseException:  # cancelled (the last joiner left) or failed: leave no member
            await self._leave_quietly(subscription)
            raise
        self._subscriptions.add(subscription)
        subscription.start(self.renew_every)
        if failure is not None:
            self.failed(failure)
        return subscription

    async def _leave_quietly(self, subscription: LayerSubscription) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(LEAVE_TIMEOUT):
                await self.layer.group_discard(subscription.group, subscription.channel)

    def forget(self, subscription: LayerSubscription) -> None:
        """No longer count ``subscription`` (it is being cancelled)."""
        self._subscriptions.discard(subscription)

    # -- recovery ------------------------------------------------------------------------------

    def failed(self, exc: BaseException) -> asyncio.Task[None]:
        """The layer failed: start the recovery (or have the running one go round again)."""
        if self._recovery is not None and not self._recovery.done():
            self._failed_again = True
            return self._recovery
        self.outages += 1
        logger.warning(
            "the channel layer failed (%s); serving the rooms from the database until it answers",
            str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
        )
        self._recovery = asyncio.create_task(self._recover(), name="channel layer recovery")
        return self._recovery

    async def layer_failed(self, exc: BaseException) -> None:
        """Report a failure and wait until the layer is back and the rooms caught up.

        Without a store there is nothing to recover with: wait one backoff.
        """
        if self.store is None:
            logger.warning("the channel layer failed: %s", exc)
            await asyncio.sleep(backoff(1))
            return
        await asyncio.shield(self.failed(exc))

    async def _recover(self) -> None:
        failures = 0
        while True:
            self._failed_again = False
            try:
                for subscription in list(self._subscriptions):
                    await self.layer.group_add(subscription.group, subscription.channel)
                for room in list(self._unsent):
                    await self._send_again(room)
            except Exception as exc:
                failures += 1
                logger.debug("the channel layer still fails (%d): %s", failures, exc)
                await self._catch_up_all()  # local members meanwhile, from the database
                await asyncio.sleep(backoff(failures))
                continue
            await self._catch_up_all()
            if not self._failed_again and not self._unsent:
                logger.warning("the channel layer answers again (%d failed attempts)", failures)
                return

    async def _send_again(self, room: str) -> None:
        """Send ``room``'s latest message once more: processes that missed it find the jump."""
        assert self.store is not None
        last_id, _ = await self.store.replay(room, None)
        _, latest = await self.store.replay(room, last_id - 1) if last_id else (0, [])
        for message in latest:
            await self.layer.group_send(
                group_for(room), {"type": EVENT_TYPE, "event": message.event, "id": message.id}
            )
        self._unsent.discard(room)

    async def _catch_up_all(self) -> None:
        for subscription in list(self._subscriptions):
            try:
                await subscription.catch_up()
            except Exception:
                logger.exception("catching %s up from the database failed", subscription.room)

    async def aclose(self) -> None:
        """Stop recovering, and cancel every subscription."""
        if self._recovery is not None:
            await stop_tasks([self._recovery])
        await asyncio.gather(*(s.cancel() for s in list(self._subscriptions)))
