"""Exercise 03 · rooms — one server, many rooms, and a registry that cleans up after itself.

Clients connect to ``/room/NAME`` (``NAME``: 1-64 of ``A-Z a-z 0-9 _ -``); ``room_of``
below reads it from the path, and other paths are refused already. Make ``handler``:

1. register the connection in ``ROOMS[NAME]``, the set of that room's connections
   (create the set when the first client arrives);
2. send every text message a client sends, unchanged, to every *other* client in
   the *same* room — not back to the sender, not to other rooms. Use
   ``broadcast(connections, message)``: one pass, no waiting for slow clients, and a
   connection that has just died cannot make *this* client's handler fail;
3. when the client leaves — politely or by vanishing without a close frame —
   remove it from its room's set, and remove a room nobody is left in from ``ROOMS``:
   a ``try``/``finally`` does it whatever way the connection ended;
4. a client that vanishes makes ``async for`` raise ``ConnectionClosedError``:
   that is routine, not a server error, so catch it.

Tip: ``broadcast`` takes any iterable of connections, so
``(other for other in room if other is not websocket)`` leaves the sender out.

Check your work with ``course_ws.check("rooms")`` in a notebook, or
``course-ws check rooms`` in a terminal.
"""

import re
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosedError
from websockets.frames import CloseCode

ROOM_PATH = re.compile(r"/room/([A-Za-z0-9_-]{1,64})")

ROOMS: dict[str, set[ServerConnection]] = {}
"""Every room with somebody in it: its name and the set of its connections."""


def room_of(websocket: ServerConnection) -> str | None:
    """The room name in the path ``/room/NAME``, or ``None`` for any other path."""
    found = ROOM_PATH.fullmatch(urlsplit(websocket.request.path).path)
    return found[1] if found else None


async def handler(websocket: ServerConnection) -> None:
    """Relay each message to the others in the sender's room; leave no trace behind."""
    name = room_of(websocket)
    if name is None:
        await websocket.close(CloseCode.POLICY_VIOLATION, "connect to /room/NAME")
        return
    room = ROOMS.setdefault(name, set())
    room.add(websocket)
    try:
        async for message in websocket:
            broadcast((other for other in room if other is not websocket), message)
    except ConnectionClosedError:
        pass  # it vanished without a close frame: routine on real networks
    finally:
        room.discard(websocket)
        if not room:
            del ROOMS[name]
