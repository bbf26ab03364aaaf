"""From frames to messages: fragmentation (RFC 6455 §5.4).

A message is one TEXT or BINARY frame with FIN=1, or a TEXT/BINARY frame
with FIN=0 followed by CONT frames, the last one with FIN=1.  Fragmenting
lets a sender stream a message whose size it doesn't know in advance.

Control frames (CLOSE, PING, PONG) may arrive *between* fragments — that is
why they can never be fragmented themselves — and they are not part of the
message.  So the caller routes them before the assembler sees anything::

    for frame in decoder.feed(data):
        if frame.opcode.is_control:
            ...  # answer PING with PONG, handle CLOSE
        elif (message := assembler.feed(frame)) is not None:
            ...  # a complete str or bytes

Handing a control frame to :meth:`MessageAssembler.feed` is a bug in the
caller, so it raises ValueError rather than silently passing it through.

This module owns the message-level rules: continuation without a message,
a new message interrupting a fragmented one, total size over ``max_size``
(1009), more than ``max_fragments`` fragments (1009), and UTF-8 validity of
text messages (1007).

What a fragmented message may cost is bounded twice, because a peer chooses
the fragment sizes. Fragments are copied into one ``bytearray``, so the memory
held is the payload and nothing per fragment: kept as a list of ``bytes``, one
1 MiB message in 1-byte fragments held 44 MB (a Python object per byte). And
the number of fragments is capped, because empty continuation frames add no
bytes: without a cap, ``max_size`` never stops a message that never ends.
"""

from __future__ import annotations

import codecs

from .constants import CloseCode, Opcode
from .errors import ProtocolError
from .frames import Frame

__all__ = ["MAX_FRAGMENTS", "MessageAssembler"]

MAX_FRAGMENTS = 1024
"""Default cap on the frames of one message.

Browsers never fragment what they send; a client that streams a message sends
a fragment per chunk, and 1 MiB (the default ``max_size``) in 1 KiB chunks is
1024 of them. Past that, the fragments are a flood, not a stream."""


class MessageAssembler:
    """Reassemble data frames into ``str`` (TEXT) or ``bytes`` (BINARY) messages.

    ``max_size`` caps the size of a whole message in bytes (None: no cap);
    the frame decoder's own ``max_size`` only caps single frames, and a peer
    could otherwise send an endless series of small fragments.
    ``max_fragments`` caps how many frames one message may take (None: no
    cap); both limits raise :class:`ProtocolError` 1009 (message too big).
    :attr:`buffered` and :attr:`fragments` tell what the message in progress
    holds so far.

    Text is validated *while* it arrives, with an incremental UTF-8 decoder:
    a character split across two fragments is valid, and garbage is detected
    in the fragment that contains it, without waiting for the end of the
    message (the decoder keeps at most 3 bytes of an unfinished character).

    After raising :class:`ProtocolError`, the connection must be failed and
    the assembler discarded.
    """

    def __init__(
        self, max_size: int | None = 2**20, max_fragments: int | None = MAX_FRAGMENTS
    ) -> None:
        self.max_size = max_size
        self.max_fragments = max_fragments
        self._opcode: Opcode | None = None  # TEXT or BINARY while a message is open
        self._utf8: codecs.IncrementalDecoder | None = None  # only for TEXT
        self._buffer = bytearray()
        self.fragments = 0
        """Frames of the message in progress, its first included (0 between messages)."""

    @property
    def buffered(self) -> int:
        """Bytes held for the message in progress: its payload so far, never over max_size."""
        return len(self._buffer)

    def feed(self, frame: Frame) -> str | bytes | None:
        """Add a data frame; return the message it completes, else None."""
        if frame.opcode.is_control:
            raise ValueError(f"{frame.opcode.name} is a control frame: handle it before assembling")
        if frame.opcode is Opcode.CONT:
            if self._opcode is None:
                raise ProtocolError(
                    CloseCode.PROTOCOL_ERROR, "continuation frame without a message to continue"
                )
        else:
            if self._opcode is not None:
                raise ProtocolError(
                    CloseCode.PROTOCOL_ERROR,
                    f"{frame.opcode.name} frame inside a fragmented {self._opcode.name} message",
                )
            self._opcode = frame.opcode
            if frame.opcode is Opcode.TEXT:
                self._utf8 = codecs.getincrementaldecoder("utf-8")()

        if self.max_fragments is not None and self.fragments >= self.max_fragments:
            raise ProtocolError(
                CloseCode.MESSAGE_TOO_BIG,
                f"message in more than {self.max_fragments} fragments",
            )
        if self.max_size is not None and len(self._buffer) + len(frame.payload) > self.max_size:
            raise ProtocolError(
                CloseCode.MESSAGE_TOO_BIG,
                f"message exceeds max_size of {self.max_size} bytes",
            )
        self.fragments += 1
        if self._utf8 is not None:
            try:
                # Only to validate as it arrives; the text is decoded once, at the end.
                self._utf8.decode(frame.payload, final=frame.fin)
            except UnicodeDecodeError as exc:
                raise ProtocolError(
                    CloseCode.INVALID_DATA, f"invalid UTF-8 in text message: {exc.reason}"
                ) from exc
        if not frame.fin:
            self._buffer += frame.payload
            return None

        if self.fragments == 1:  # the usual case: one frame, no copy
            payload = frame.payload
        else:
            self._buffer += frame.payload
            payload = bytes(self._buffer)
        message = payload.decode() if self._opcode is Opcode.TEXT else payload
        self._reset()
        return message

    def _reset(self) -> None:
        """Forget the message in progress, releasing its bytes."""
        self._opcode = None
        self._utf8 = None
        self._buffer = bytearray()
        self.fragments = 0
