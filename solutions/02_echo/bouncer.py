"""Exercise 02 · bouncer — a handler with house rules, and the close codes to enforce them.

Make ``handler`` serve each client by these rules:

1. the text ``"ping"`` is answered with the text ``"pong"``;
2. the text ``"bye"`` ends the connection properly: close it with code 1000
   (normal closure) and the reason ``"bye"``;
3. a *binary* message is not welcome: close the connection with code 1003
   (unsupported data) and the reason ``"text only"``;
4. any other text comes back unchanged (an echo);
5. a client that vanishes without a close frame (code 1006) is routine, not a bug:
   the handler returns quietly instead of letting ``ConnectionClosedError`` escape
   (which would log a traceback per client on the server).

Tips: ``await websocket.close(code, reason)`` performs the closing handshake;
``websockets.frames.CloseCode`` names the codes (``CloseCode.UNSUPPORTED_DATA``);
after a close, ``async for`` ends by itself for 1000 and raises
``ConnectionClosedError`` for other codes.

Check your work with ``course_ws.check("bouncer")`` in a notebook, or
``course-ws check bouncer`` in a terminal.
"""

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosedError
from websockets.frames import CloseCode


async def handler(websocket: ServerConnection) -> None:
    """Answer ping, close on bye or binary, echo the rest, and shrug off vanishing clients."""
    try:
        async for message in websocket:
            if isinstance(message, bytes):
                await websocket.close(CloseCode.UNSUPPORTED_DATA, "text only")
            elif message == "ping":
                await websocket.send("pong")
            elif message == "bye":
                await websocket.close(CloseCode.NORMAL_CLOSURE, "bye")
            else:
                await websocket.send(message)
    except ConnectionClosedError:
        # The client vanished (1006), or we closed with 1003 and the loop's next
        # read reports that non-1000 ending: either way, this connection is over.
        return
