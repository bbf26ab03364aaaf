"""A room's memory: its last messages, so a client that reconnects loses nothing.

The memory is bounded twice: in messages (``maxlen``) and in bytes
(``max_bytes``, counted as the UTF-8 size of each message's event). A count
alone is no bound: 1,000 messages of 4,096 emoji are 45 MB.
"""

from __future__ import annotations

from collections import deque

from course_ws.chat.protocol import Message

DEFAULT_HISTORY = 1000
DEFAULT_HISTORY_BYTES = 2**20


class RoomHistory:
    """The last messages of one room, oldest first, within ``maxlen`` and ``max_bytes``."""

    def __init__(self, maxlen: int = DEFAULT_HISTORY, max_bytes: int = DEFAULT_HISTORY_BYTES):
        if maxlen < 1 or max_bytes < 1:
            raise ValueError("a history keeps at least one message and one byte")
        self.maxlen = maxlen
        self.max_bytes = max_bytes
        self._messages: deque[Message] = deque()
        self.bytes = 0
        """UTF-8 bytes of the remembered events."""
        self.last_id = 0

    def append(self, message: Message) -> int:
        """Remember ``message`` (its id must be the highest so far); return the bytes it added
        minus the bytes of the older messages it pushed out."""
        if message.id <= self.last_id:
            raise ValueError(f"message id {message.id} is not above {self.last_id}")
        before = self.bytes
        self._messages.append(message)
        self.bytes += message.size
        self.last_id = message.id
        while len(self._messages) > self.maxlen or (
            self.bytes > self.max_bytes and len(self._messages) > 1
        ):
            self.bytes -= self._messages.popleft().size
        return self.bytes - before

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
