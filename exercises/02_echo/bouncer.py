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


async def handler(websocket: ServerConnection) -> None:
    """Answer ping, close on bye or binary, echo the rest, and shrug off vanishing clients."""
    # TODO 5: a client that vanishes makes ``async for`` raise ConnectionClosedError: catch it.
    async for message in websocket:
        # TODO 1: "ping" gets "pong".
        # TODO 2: "bye" closes the connection with 1000 and the reason "bye".
        # TODO 3: a binary message (bytes) closes the connection with 1003 and "text only".
        # TODO 4: anything else is echoed, as it is now.
        await websocket.send(message)
