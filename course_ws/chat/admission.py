"""Admission: may this opening handshake become a chat member? Decided before any accept.

Every stack asks the same question with the same inputs — the request target
(path and query), the headers, the client's address — and gets the same
answer: :class:`Admitted` with what the member asked for, or :class:`Refusal`
with the HTTP status and text to answer instead of ``101 Switching Protocols``.
The order of the checks is part of the contract, so it lives here once:

1. the path: ``/chat/{room}`` with a valid room, else 404;
2. the query: ``?user=`` and ``?since=`` well formed, else 400;
3. the client's address: connection attempts and open connections, else 429.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from course_ws.chat.protocol import ROOM_PATTERN, guest_name, valid_user
from course_ws.rfc6455 import HandshakeError, split_target

CHAT_PREFIX = "/chat/"


@dataclass(frozen=True)
class Refusal:
    """A handshake refused with an HTTP response: ``status`` and a one-line ``text``."""

    status: int
    text: str


@dataclass(frozen=True)
class Admitted:
    """A handshake that may become a member of ``room``."""

    room: str
    user: str
    since: int | None
    address: str


def chat_room(path: str) -> str | None:
    """The room of a ``/chat/{room}`` path, or ``None`` for any other path."""
    if not path.startswith(CHAT_PREFIX):
        return None
    room = path.removeprefix(CHAT_PREFIX)
    return room if ROOM_PATTERN.fullmatch(room) else None


def parse_query(query: str) -> tuple[str | None, int | None]:
    """``user`` and ``since`` from a query string; :class:`ValueError` says what is wrong."""
    values = parse_qs(query, keep_blank_values=True)
    user = values.get("user", [None])[-1]
    if user is not None and not valid_user(user):
        raise ValueError("user must be 1-32 characters of A-Z a-z 0-9 _ . -")
    since = values.get("since", [None])[-1]
    if since is not None and not (since.isascii() and since.isdigit() and len(since) <= 18):
        raise ValueError("since must be a message id: a whole number, 0 or more")
    return user, int(since) if since is not None else None


def admit(
    target: str, address: str, attempt: Callable[[str], str | None] | None = None
) -> Admitted | Refusal:
    """Decide on one chat handshake from its request ``target`` and client ``address``.

    ``attempt`` counts the attempt against the address's limits and returns a
    reason to refuse (see :class:`course_ws.chat.ratelimit.PerAddress`).
    """
    try:
        path, query = split_target(target)
    except HandshakeError as exc:
        return Refusal(exc.status, exc.reason)
    room = chat_room(path)
    if room is None:
        return Refusal(404, f"no chat room at {path}: rooms are 1-64 of A-Z a-z 0-9 _ -")
    try:
        user, since = parse_query(query)
    except ValueError as exc:
        return Refusal(400, str(exc))
    if attempt is not None and (reason := attempt(address)) is not None:
        return Refusal(429, reason)
    return Admitted(room, user or guest_name(), since, address)
