"""Exercise 03 · chat_server — the course's chat protocol, as a program of your own.

Write a chat server that a terminal (or a parent process) can start and stop:

    $ python chat_server.py 8765
    listening on ws://127.0.0.1:8765

Clients connect to ``/chat/ROOM?user=NAME`` (``?since=N`` to resume) and speak JSON
text frames — the protocol of notebook 03, section 3:

1. **Welcome.** The first event a client receives:
   ``{"type": "welcome", "room": r, "user": u, "last_id": N, "members": [names]}``,
   where ``last_id`` is the id of the room's last message (0: none yet) and
   ``members`` lists who was already in the room.
2. **Resume.** With ``?since=N``, the welcome is followed by every message of the
   room's history with an id above ``N`` (a ``since`` above ``last_id`` replays the
   whole history). The history keeps the last ``HISTORY`` messages.
3. **Join.** Then everyone in the room, the newcomer included, receives
   ``{"type": "join", "room": r, "user": u}``; when it leaves, however it leaves,
   the others receive the same with ``"leave"``.
4. **Say.** ``{"type": "say", "text": "…"}`` becomes
   ``{"type": "message", "id": N, "room": r, "user": u, "text": t, "ts": seconds}``
   for every member of the room, the sender included, sent with ``broadcast``.
   ``id`` counts 1, 2, 3… per room; ``text`` is stripped; ``ts`` is ``time.time()``.
5. **Errors.** A frame that is not JSON gets ``{"type": "error", "code": "bad_json",
   "detail": "…"}``; valid JSON that is not a ``say`` with 1 to ``MAX_TEXT`` characters
   of text after stripping gets ``bad_message`` (over ``MAX_TEXT``: ``too_long``).
   Only the sender gets the error, and its connection stays open.

Written for you, as in chapter 02's ``echo_server``: ``main`` (the modern form: a
one-argument handler, ``async with serve(...)`` and ``serve_forever()`` under
``asyncio.run``; port 0 for a free one; Ctrl-C closes every client with 1001),
``check_request`` (404 for another path, 400 for a malformed ``?user=`` or ``?since=``)
and ``handler``, which registers in ``arrive`` and unregisters in ``finally``. Yours:
``say``, ``arrive`` and ``leave`` — the TODOs, numbered in the order above.

The package's ``course_ws/servers/chat.py`` (with ``course_ws/chat/``) is the reference;
it adds rate limits, presence limits, metrics and a bound on slow clients.

Check your work with ``course_ws.check("chat_server")`` in a notebook, or
``course-ws check chat_server`` in a terminal.
"""

import asyncio
import contextlib
import itertools
import json
import re
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosedError
from websockets.http11 import Request, Response

HOST = "127.0.0.1"
HISTORY = 100
"""Messages each room remembers for clients that resume with ``?since=``."""
MAX_TEXT = 4096
ROOM = re.compile(r"/chat/([A-Za-z0-9_-]{1,64})")
USER = re.compile(r"[A-Za-z0-9_.-]{1,32}")
guests = itertools.count(1)


@dataclass
class Room:
    members: dict[ServerConnection, str] = field(default_factory=dict)
    """Each connection in the room, and its user's name."""
    history: deque[tuple[int, str]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    """The last messages: (id, the JSON text that was broadcast)."""
    last_id: int = 0


ROOMS: dict[str, Room] = {}


def target(path: str) -> tuple[str, str | None, int | None]:
    """``/chat/lobby?user=ada&since=3`` → ``("lobby", "ada", 3)``; ValueError if malformed."""
    url = urlsplit(path)
    query = {key: values[-1] for key, values in parse_qs(url.query).items()}
    room = ROOM.fullmatch(url.path)
    if room is None:
        raise LookupError(f"no such path: {url.path}")
    user = query.get("user")
    if user is not None and not USER.fullmatch(user):
        raise ValueError("user: 1 to 32 of A-Z a-z 0-9 _ . -")
    since = query.get("since")
    if since is not None and not since.isdecimal():
        raise ValueError("since: a message id, 0 or more")
    return room[1], user, None if since is None else int(since)


def check_request(connection: ServerConnection, request: Request) -> Response | None:
    """Refuse a handshake for an unknown path (404) or a malformed query (400)."""
    try:
        target(request.path)
    except LookupError as exc:
        return connection.respond(HTTPStatus.NOT_FOUND, f"{exc}\n")
    except ValueError as exc:
        return connection.respond(HTTPStatus.BAD_REQUEST, f"{exc}\n")
    return None


def error(code: str, detail: str) -> str:
    return json.dumps({"type": "error", "code": code, "detail": detail})


def say(room: Room, name: str, user: str, frame: str) -> str | None:
    """Publish a ``say`` frame to the room; the error event for the sender if it is not one."""
    try:
        data = json.loads(frame)
    except json.JSONDecodeError as exc:
        return error("bad_json", f"not JSON: {exc.msg}")
    if not isinstance(data, dict) or data.get("type") != "say":
        return error("bad_message", 'send {"type": "say", "text": "…"}')
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        return error("bad_message", "text: a string, not empty")
    text = text.strip()
    if len(text) > MAX_TEXT:
        return error("too_long", f"text is over {MAX_TEXT} characters")
    room.last_id += 1
    message = {"type": "message", "id": room.last_id, "room": name, "user": user}
    event = json.dumps(message | {"text": text, "ts": time.time()})
    room.history.append((room.last_id, event))
    broadcast(room.members, event)
    return None


def arrive(
    websocket: ServerConnection, room: Room, name: str, user: str, since: int | None
) -> None:
    """Welcome ``websocket``, replay what it missed, register it and announce it.

    A plain ``def`` cannot ``await``: nothing else runs until it returns, so no message
    can be said between the replay and the registration, and be missed.
    ``broadcast`` to one connection is a write that never waits.
    """
    members = sorted(room.members.values())
    welcome = {"type": "welcome", "room": name, "user": user, "last_id": room.last_id}
    broadcast([websocket], json.dumps(welcome | {"members": members}))
    if since is not None:
        if since > room.last_id:  # a client from before a restart: replay everything
            since = 0
        for message_id, event in room.history:
            if message_id > since:
                broadcast([websocket], event)
    room.members[websocket] = user
    broadcast(room.members, json.dumps({"type": "join", "room": name, "user": user}))


def leave(websocket: ServerConnection, room: Room, name: str) -> None:
    """Unregister ``websocket`` and tell those still in the room."""
    user = room.members.pop(websocket)
    broadcast(room.members, json.dumps({"type": "leave", "room": name, "user": user}))


async def handler(websocket: ServerConnection) -> None:
    """One member of a room, from its welcome to its leave."""
    name, user, since = target(websocket.request.path)  # check_request let it in
    room = ROOMS.setdefault(name, Room())
    arrive(websocket, room, name, user or f"guest-{next(guests)}", since)
    try:
        async for frame in websocket:
            if isinstance(frame, bytes):
                await websocket.close(1003, "the chat speaks JSON text frames")
                break
            reply = say(room, name, room.members[websocket], frame)
            if reply is not None:
                await websocket.send(reply)  # to the sender only
    except ConnectionClosedError:
        pass  # a client that vanishes is routine, not a server error
    finally:
        leave(websocket, room, name)


async def main(port: int) -> None:
    """Serve the chat on HOST:port until the program is interrupted."""
    async with serve(handler, HOST, port, process_request=check_request) as server:
        print(f"listening on ws://{HOST}:{server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    # Ctrl-C: asyncio.run cancels main(), which closes every client with 1001, then
    # raises KeyboardInterrupt; suppressing it ends the program with status 0.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(port))
