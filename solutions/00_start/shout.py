"""Exercise 00 · shout — your first WebSocket handler.

The ``websockets`` library calls your handler once per connection, with that
connection as its only argument. Make ``handler``:

1. answer every *text* message with the same text in upper case ("hi" → "HI");
2. send every *binary* message back unchanged — bytes are not text: they have no
   case to change, and decoding them would corrupt them;
3. keep answering, in order, until the client closes; then simply return.

Tip: a text frame arrives as ``str`` and a binary frame as ``bytes``;
``await websocket.send(x)`` sends a text frame for ``str`` and a binary frame for ``bytes``.

Check your work with ``course_ws.check("shout")`` in a notebook, or
``course-ws check shout`` in a terminal.
"""

from websockets.asyncio.server import ServerConnection


async def handler(websocket: ServerConnection) -> None:
    """Shout text back in upper case; return binary unchanged."""
    async for message in websocket:
        # ``bytes.upper()`` exists too, so the type decides, not the method.
        if isinstance(message, str):
            await websocket.send(message.upper())
        else:
            await websocket.send(message)
