"""Exercise 03 · presence — who is here? A newcomer gets the list; everyone hears joins and leaves.

Clients connect with their name in the query string, ``/?user=NAME``; ``user_of``
below reads it, and ``MEMBERS`` (connection → name) already holds everyone connected:
the handler registers each connection and its ``finally`` unregisters it, however the
connection ends. Every event is a JSON text message. Make ``handler``:

1. first send the newcomer the names of everyone already connected, sorted, with
   duplicates kept: ``{"type": "members", "users": ["ada", "bob"]}`` (``[]`` for the
   first one; the newcomer is not in its own list);
2. tell everyone already connected (not the newcomer) who joined:
   ``{"type": "join", "user": "cy"}``;
3. when it leaves — politely or by vanishing without a close frame — tell everyone
   still connected: ``{"type": "leave", "user": "cy"}``.

Tips: ``json.dumps(event)`` makes the text; ``broadcast(MEMBERS, text)`` (from
``websockets.asyncio.server``) sends it to every registered connection in one pass —
iterating a dict gives its keys. Order matters: what a client is told must match who
is in ``MEMBERS`` at that moment.

Check your work with ``course_ws.check("presence")`` in a notebook, or
``course-ws check presence`` in a terminal.
"""

import json
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.exceptions import ConnectionClosedError

MEMBERS: dict[ServerConnection, str] = {}
"""Everyone connected: each connection and the name it gave."""


def user_of(websocket: ServerConnection) -> str:
    """The ``user`` in the query string (``/?user=ada``), or ``"anonymous"``."""
    query = parse_qs(urlsplit(websocket.request.path).query)
    return query.get("user", ["anonymous"])[-1]


async def handler(websocket: ServerConnection) -> None:
    """Welcome a newcomer with the list of members, and keep everyone's list current."""
    user = user_of(websocket)
    await websocket.send(json.dumps({"type": "members", "users": sorted(MEMBERS.values())}))
    broadcast(MEMBERS, json.dumps({"type": "join", "user": user}))
    MEMBERS[websocket] = user
    try:
        async for _ in websocket:  # this exercise ignores what clients say, but keeps reading
            pass
    except ConnectionClosedError:
        pass  # it vanished without a close frame: routine on real networks
    finally:
        del MEMBERS[websocket]
        broadcast(MEMBERS, json.dumps({"type": "leave", "user": user}))
