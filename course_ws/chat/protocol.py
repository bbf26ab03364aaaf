"""The chat protocol: JSON text frames, validated on the way in, built once on the way out.

Client → server::

    {"type": "say", "text": "…"}            1–4096 characters after stripping

Over HTTP, ``POST /rooms/{room}/messages`` with ``{"user": "…", "text": "…"}``
says a message into a room from outside any WebSocket (:class:`Post`); the
answer is ``201`` and ``{"type": "posted", "room": r, "id": N}``.

Server → client::

    {"type": "welcome", "room": r, "user": u, "last_id": N, "members": [...]}
    {"type": "message", "id": N, "room": r, "user": u, "text": t, "ts": seconds}
    {"type": "join" | "leave", "room": r, "user": u}
    {"type": "error", "code": "bad_json" | "bad_message" | "too_long"
                            | "rate_limited" | "unauthorized" | "unavailable",
     "detail": "…"}

``members`` in the welcome lists the users of the connections already in the
room (a user with two tabs appears twice); ``join``/``leave`` then keep that
list current — the newcomer receives its own ``join`` too.

Large rooms track no presence: announcing each join to 10,000 members is
10,000 writes, and filling such a room would cost 50 million. A room with more
than the server's presence limit (default 100) sends ``"members": null`` in the
welcome and announces no joins or leaves while it is over the limit, so a
member list kept by a client is exact as long as the room stays under it.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, ValidationError

Model = TypeVar("Model", bound=BaseModel)

MAX_TEXT = 4096
ROOM_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
USER_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class ErrorCode(StrEnum):
    """Why a client's message was refused; the connection stays open."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    TOO_LONG = "too_long"
    RATE_LIMITED = "rate_limited"
    UNAUTHORIZED = "unauthorized"
    UNAVAILABLE = "unavailable"


class ChatError(Exception):
    """A refused message: becomes an ``error`` event for the client that sent it."""

    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail

    def event(self) -> str:
        """The ``error`` event to send back."""
        return dumps({"type": "error", "code": self.code.value, "detail": self.detail})


class Say(BaseModel):
    """``{"type": "say", "text": "…"}``: the only thing a client sends."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    type: Literal["say"]
    text: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT)
    ]


def _display_name(name: str) -> str:
    if not valid_user(name):
        raise ValueError("user must be 1-32 characters of A-Z a-z 0-9 _ . -")
    return name


class Post(BaseModel):
    """``{"user": "…", "text": "…"}``: a message posted into a room over HTTP.

    The same rules as a member's ``say``: the name is a display name, the text
    1–4096 characters after stripping; nothing else is accepted.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    user: Annotated[str, AfterValidator(_display_name)]
    text: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TEXT)
    ]


MAX_POST_BYTES = 4 * MAX_TEXT + 1024
"""The largest ``POST`` body read: the longest text, each character 4 UTF-8 bytes, and the rest."""


def dumps(event: dict[str, object]) -> str:
    """Compact JSON, UTF-8 kept as is: what goes on the wire."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def _load_object(raw: str | bytes) -> dict[str, object]:
    """The JSON object in ``raw``, or :class:`ChatError` saying why it is not one."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ChatError(ErrorCode.BAD_JSON, f"not JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:  # 100,000 nested "[": the decoder recurses once per level
        raise ChatError(ErrorCode.BAD_JSON, "not JSON we accept: nested too deeply") from None
    except ValueError as exc:  # an integer over sys.get_int_max_str_digits() digits
        raise ChatError(ErrorCode.BAD_JSON, f"not JSON we accept: {exc}") from None
    if not isinstance(data, dict):
        raise ChatError(ErrorCode.BAD_MESSAGE, f"expected a JSON object, got {type(data).__name__}")
    return data


def parse_say(raw: str) -> Say:
    """Validate one text frame from a client, or raise :class:`ChatError` saying what is wrong."""
    data = _load_object(raw)
    if data.get("type") != "say":
        raise ChatError(ErrorCode.BAD_MESSAGE, f"unknown type {data.get('type')!r}; send 'say'")
    return _validate(Say, data)


def parse_post(raw: bytes) -> Post:
    """Validate the body of a ``POST /rooms/{room}/messages``, or raise :class:`ChatError`."""
    return _validate(Post, _load_object(raw))


def _validate(model: type[Model], data: dict[str, object]) -> Model:
    """``data`` as a ``model``, or the first validation error as a :class:`ChatError`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "string_too_long":
            raise ChatError(
                ErrorCode.TOO_LONG, f"text is over {MAX_TEXT} characters after stripping"
            ) from None
        where = ".".join(str(part) for part in first["loc"]) or "message"
        raise ChatError(ErrorCode.BAD_MESSAGE, f"{where}: {first['msg']}") from None


@dataclass(frozen=True)
class Message:
    """A message said in a room, as stored in its history and sent to every member."""

    id: int
    room: str
    user: str
    text: str
    ts: float

    @cached_property
    def size(self) -> int:
        """What remembering this message costs, in bytes: its text and its serialised event
        (both are kept), counted in UTF-8."""
        return len(self.text.encode()) + len(self.event.encode())

    @cached_property
    def event(self) -> str:
        """The ``message`` event, serialised once however many members receive it."""
        return dumps(
            {
                "type": "message",
                "id": self.id,
                "room": self.room,
                "user": self.user,
                "text": self.text,
                "ts": self.ts,
            }
        )


def welcome(room: str, user: str, last_id: int, members: list[str] | None) -> str:
    """The first event of every connection."""
    return dumps(
        {"type": "welcome", "room": room, "user": user, "last_id": last_id, "members": members}
    )


def presence(kind: Literal["join", "leave"], room: str, user: str) -> str:
    """A ``join`` or ``leave`` event."""
    return dumps({"type": kind, "room": room, "user": user})


def guest_name() -> str:
    """A display name for a client that did not pick one: ``guest-1a2b3c``."""
    return f"guest-{secrets.token_hex(3)}"


def valid_user(name: str) -> bool:
    """Whether ``name`` may be a display name: 1–32 of ``[A-Za-z0-9_.-]``."""
    return USER_PATTERN.fullmatch(name) is not None
