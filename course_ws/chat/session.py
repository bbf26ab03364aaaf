"""One member's session, without I/O: a frame in, one action out.

An adapter (``websockets``, raw ASGI, Starlette, FastAPI, Channels) reads a
frame from its stack, hands it to :meth:`MemberSession.receive`, and carries
out the action it gets back:

- :class:`Publish` — say ``text`` in the room (the service gives it an id);
- :class:`Reply` — send ``event`` to this member only (an ``error`` event);
- :class:`Close` — close the connection with ``code`` and ``reason``.

The order of the checks is the contract: the rate limit is taken *before*
parsing, so a flood of garbage costs the server a token bucket, not a JSON
decoder; then the message is validated; a binary frame closes with 1003.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from course_ws.chat.protocol import ChatError, ErrorCode, parse_say
from course_ws.chat.ratelimit import TokenBucket


class CloseCode(IntEnum):
    """The close codes the chat itself decides on (RFC 6455 §7.4.1)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    UNSUPPORTED_DATA = 1003
    POLICY_VIOLATION = 1008
    INTERNAL_ERROR = 1011
    TRY_AGAIN_LATER = 1013


@dataclass(frozen=True)
class Publish:
    """Say ``text`` in the member's room."""

    text: str


@dataclass(frozen=True)
class Reply:
    """Send ``event`` (JSON text) to this member only; the connection stays open."""

    event: str


@dataclass(frozen=True)
class Close:
    """Close the connection."""

    code: CloseCode
    reason: str


Action = Publish | Reply | Close

BINARY_REFUSED = Close(CloseCode.UNSUPPORTED_DATA, "chat messages are JSON text frames")


class MemberSession:
    """What one member may do: its room, its name and the message bucket of its address."""

    def __init__(self, room: str, user: str, bucket: TokenBucket) -> None:
        self.room = room
        self.user = user
        self.bucket = bucket

    def receive(self, frame: str | bytes) -> Action:
        """The action for one frame from this member."""
        if isinstance(frame, bytes):
            return BINARY_REFUSED
        try:
            if not self.bucket.take():
                raise ChatError(
                    ErrorCode.RATE_LIMITED,
                    f"over {self.bucket.rate:g} messages a second; slow down",
                )
            say = parse_say(frame)
        except ChatError as error:
            return Reply(error.event())
        return Publish(say.text)
