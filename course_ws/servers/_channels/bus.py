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
- **Group memberships expire** (``group_expiry``, a day by default, on both
  the in-memory and the Redis layer): each subscription renews its own
  membership every half of that.
- **Delivery is at most once**: a channel over its ``capacity`` silently loses
  what is sent to it (``group_send`` swallows ``ChannelFull``). Chat messages
  carry their room's ids, which increase by one, so a subscription that sees
  an id jump knows it lost messages: it holds back the message after the
  gap and calls ``on_gap(room)``; the ``channels`` server then closes the
  room's local members with 1012, and they come back with ``?since=`` and get
  everything they missed from the store. (A lost join or leave has no id,
  and shows only with the messages lost around it; the members' new welcome
  then carries the right member list. A member still being welcomed when the
  gap is found is not closed: it has read the store already, or reads it
  after the lost messages were stored.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from course_ws.chat.brokers import Delivery
from course_ws.chat.protocol import ROOM_PATTERN

logger = logging.getLogger("course_ws.servers.channels")

GROUP_PREFIX = "course_ws.chat."
EVENT_TYPE = "chat.event"
"""The ``type`` of each event sent to a room's group (a consumer's handler: ``chat_event``)."""
DEFAULT_GROUP_EXPIRY = 86_400
"""Channels' default ``group_expiry``, for a layer that does not say its own."""

Gap = Callable[[str], None]
"""Called with a room whose events were lost on the way to this process."""


def group_for(room: str) -> str:
    """The channel layer group of ``room``: ``course_ws.chat.{room}``.

    A room name (1-64 of ``A-Z a-z 0-9 _ -``) is valid in a group name as it
    is, and the prefix keeps the whole under Channels' 100 characters;
    :class:`ValueError` for anything that is not a room name.
    """
    if not ROOM_PATTERN.fullmatch(room):
        raise ValueError(f"not a room name: {room!r}")
    return GROUP_PREFIX + room


class LayerSubscription:
    """This process's membership of one room's group, and the task that reads its channel."""

    def __init__(self, bus: ChannelLayerBus, room: str, channel: str, deliver: Delivery) -> None:
        self.bus = bus
        self.room = room
        self.group = group_for(room)
        self.channel = channel
        self.deliver = deliver
        self.last_id: int | None = None
        """The id of the last message received; ``None`` before the first."""
        self.gaps = 0
        """How many times messages were found missing."""
        self._tasks: list[asyncio.Task[None]] = []
        self._cancelled = False

    def start(self, renew_every: float) -> None:
        """Start reading the channel, and renewing the group membership."""
        self._tasks = [
            asyncio.create_task(self._receive(), name=f"bus {self.group}"),
            asyncio.create_task(self._renew(renew_every), name=f"renew {self.group}"),
        ]

    async def _receive(self) -> None:
        layer = self.bus.layer
        while True:
            message = await layer.receive(self.channel)
            if message.get("type") != EVENT_TYPE:
                logger.warning("%s: ignored a %r message", self.channel, message.get("type"))
                continue
            message_id = message.get("id")
            if message_id is not None and not self._in_sequence(message_id):
                continue  # the members resume from the store, where this one is too
            try:
                self.deliver(message["event"], message_id)
            except Exception:
                logger.exception("delivering an event of %s failed", self.room)

    def _in_sequence(self, message_id: int) -> bool:
        """Note ``message_id``; ``False``, and the gap reported, if messages before it are lost.

        The message after a gap is not delivered: a client that saw it would
        resume after it, and never ask for the ones that were lost.
        """
        last, self.last_id = self.last_id, message_id
        if last is not None and message_id > last + 1:
            self.gaps += 1
            logger.warning(
                "%s: messages %d to %d were lost on the channel layer",
                self.room,
                last + 1,
                message_id - 1,
            )
            self.bus.on_gap(self.room)
            return False
        return True

    async def _renew(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            await self.bus.layer.group_add(self.group, self.channel)

    async def cancel(self) -> None:
        """Leave the group and stop reading; idempotent."""
        if self._cancelled:
            return
        self._cancelled = True
        self.bus.forget(self)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        with contextlib.suppress(Exception):  # a layer that is gone has no group to leave
            await self.bus.layer.group_discard(self.group, self.channel)


class ChannelLayerBus:
    """Carries each room's events through a channel layer's groups.

    ``layer`` is a channel layer (``channels.layers.InMemoryChannelLayer``,
    ``channels_redis``' layers) used on this event loop only. ``on_gap(room)``
    is called when a subscription finds messages missing; ``renew_every`` is
    how often each subscription renews its group membership (default: half the
    layer's ``group_expiry``).
    """

    def __init__(
        self,
        layer: Any,
        on_gap: Gap | None = None,
        renew_every: float | None = None,
    ) -> None:
        self.layer = layer
        self.on_gap: Gap = on_gap or (lambda room: None)
        expiry = getattr(layer, "group_expiry", DEFAULT_GROUP_EXPIRY)
        self.renew_every = renew_every if renew_every is not None else expiry / 2
        self._subscriptions: set[LayerSubscription] = set()

    @property
    def subscriptions(self) -> int:
        """Open subscriptions in this process."""
        return len(self._subscriptions)

    async def publish(self, room: str, event: str, message_id: int | None) -> None:
        """Send ``event`` to every process subscribed to ``room`` (at most once)."""
        await self.layer.group_send(
            group_for(room), {"type": EVENT_TYPE, "event": event, "id": message_id}
        )

    async def subscribe(self, room: str, deliver: Delivery) -> LayerSubscription:
        """Join ``room``'s group with a channel of this process's own, and read it.

        Once this returns, the channel is in the group: every later
        ``group_send`` reaches it.
        """
        channel = await self.layer.new_channel()
        subscription = LayerSubscription(self, room, channel, deliver)
        try:
            await self.layer.group_add(subscription.group, channel)
        except BaseException:  # cancelled (the last joiner left) or failed: leave no member
            with contextlib.suppress(Exception):
                await self.layer.group_discard(subscription.group, channel)
            raise
        self._subscriptions.add(subscription)
        subscription.start(self.renew_every)
        return subscription

    def forget(self, subscription: LayerSubscription) -> None:
        """No longer count ``subscription`` (it is being cancelled)."""
        self._subscriptions.discard(subscription)

    async def aclose(self) -> None:
        """Cancel every subscription."""
        for subscription in list(self._subscriptions):
            await subscription.cancel()
