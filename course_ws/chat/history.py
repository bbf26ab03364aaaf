"""A room's memory: the last N messages, so a client that reconnects loses nothing."""

from __future__ import annotations

from collections import deque

from course_ws.chat.protocol import Message

DEFAULT_HISTORY = 1000


class RoomHistory:
    """The last ``maxlen`` messages of one room, oldest first, and its last id."""

    def __init__(self, maxlen: int = DEFAULT_HISTORY) -> None:
        self._messages: deque[Message] = deque(maxlen=maxlen)
        self.last_id = 0

    def append(self, message: Message) -> None:
        """Remember ``message``; its id must be the highest so far."""
        if message.id <= self.last_id:
            raise ValueError(f"message id {message.id} is not above {self.last_id}")
        self._messages.append(message)
        self.last_id = message.id

    def since(self, last_seen: int) -> list[Message]:
        """Every remembered message with an id above ``last_seen``, oldest first."""
        if last_seen >= self.last_id:
            return []
        newer: list[Message] = []
        for message in reversed(self._messages):  # the wanted ones are at the end
            if message.id <= last_seen:
                break
            newer.append(message)
        newer.reverse()
        return newer

    def __len__(self) -> int:
        return len(self._messages)
