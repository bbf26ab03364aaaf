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
(1009), and UTF-8 validity of text messages (1007).
"""

from __future__ import annotations

import codecs

from .constants import CloseCode, Opcode
from .errors import ProtocolError
from .frames import Frame

__all__ = ["MessageAssembler"]


class MessageAssembler:
    """Reassemble data frames into ``str`` (TEXT) or ``bytes`` (BINARY) messages.

    ``max_size`` caps the size of a whole message in bytes (None: no cap);
    the frame decoder's own ``max_size`` only caps single frames, and a peer
    could otherwise send an endless series of small fragments.

    Text is validated *while* it arrives, with an incremental UTF-8 decoder:
    a character split across two fragments is valid, and garbage is detected
    in the fragment that contains it, without waiting for the end of the
    message (the decoder keeps at most 3 bytes of an unfinished character).

    After raising :class:`ProtocolError`, the connection must be failed and
    the assembler discarded.
    """

    def __init__(self, max_size: int | None = 2**20) -> None:
        self.max_size = max_size
        self._reset()

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

        self._size += len(frame.payload)
        if self.max_size is not None and self._size > self.max_size:
            raise ProtocolError(
                CloseCode.MESSAGE_TOO_BIG,
                f"message exceeds max_size of {self.max_size} bytes",
            )
        if self._utf8 is not None:
            try:
                self._text.append(self._utf8.decode(frame.payload, final=frame.fin))
            except UnicodeDecodeError as exc:
                raise ProtocolError(
                    CloseCode.INVALID_DATA, f"invalid UTF-8 in text message: {exc.reason}"
                ) from exc
        else:
            self._binary.append(frame.payload)

        if not frame.fin:
            return None
        message = "".join(self._text) if self._opcode is Opcode.TEXT else b"".join(self._binary)
        self._reset()
        return message

    def _reset(self) -> None:
        """Forget the message in progress, releasing its fragments."""
        self._opcode: Opcode | None = None  # TEXT or BINARY while a message is open
        self._size = 0
        self._utf8: codecs.IncrementalDecoder | None = None  # only for TEXT
        self._text: list[str] = []
        self._binary: list[bytes] = []
