"""The gapless catch-up: how a member joins a busy room without missing or repeating a message.

A member that joins (or resumes with ``?since=N``) is sent a welcome and the
history it missed, which takes time; meanwhile others keep talking. So the
room hands every live event to a :class:`CatchUp` *before* the replay is read,
and the replay is read *after*. Then:

- a message in the buffer with an id at or below the replay's ``last_id`` was
  in the replay (or the client already had it): skip it;
- a message above ``last_id``, and every presence event, is sent after the
  replay, in the order it arrived.

Only then does the member go live, with no ``await`` between the last buffered
event and joining the room's members, so nothing falls in between.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(eq=False)
class CatchUp:
    """The live events of a room that arrive while one member is being replayed to.

    Compared by identity: two joiners' buffers are never "equal" to each other
    (a list compared by value was, and ``list.remove`` took the wrong one).
    """

    buffered: deque[tuple[int | None, str]] = field(default_factory=deque)
    max_events: int = 10_000
    """More than this arriving during one replay means the member cannot keep up."""
    overflowed: bool = False
    abandoned: str | None = None
    """Why the room gave up on this catch-up (:meth:`abandon`), if it did."""

    def deliver(self, event: str, message_id: int | None) -> None:
        """Keep one live event (``message_id`` is ``None`` for presence)."""
        if len(self.buffered) >= self.max_events:
            self.overflowed = True
            self.buffered.clear()
            return
        if not self.overflowed:
            self.buffered.append((message_id, event))

    def abandon(self, reason: str) -> None:
        """The room's ids went back or the bus lost events: what was replayed cannot be
        continued; the next :meth:`after` raises :class:`OverflowError` with the first
        ``reason`` given."""
        if self.abandoned is None:
            self.abandoned = reason
        self.buffered.clear()

    def after(self, last_id: int) -> str | None:
        """The next buffered event to send after a replay up to ``last_id``, or ``None``.

        Call it until it returns ``None``; the buffer may grow between calls
        while the caller awaits its send.
        """
        if self.abandoned is not None:
            raise OverflowError(self.abandoned)
        if self.overflowed:
            raise OverflowError("the room moved faster than this member could catch up")
        while self.buffered:
            message_id, event = self.buffered.popleft()
            if message_id is None or message_id > last_id:
                return event
        return None
