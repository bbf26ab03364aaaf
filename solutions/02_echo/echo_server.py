"""Exercise 02 · echo_server — a WebSocket echo server as a program of its own.

Write a complete program that a terminal (or a parent process) can start and stop:

    $ python echo_server.py 8765
    listening on ws://127.0.0.1:8765

1. ``handler(websocket)`` takes **one** argument, the connection, and sends every
   message back unchanged: text as text, bytes as bytes, until the client leaves.
   A client that leaves while you answer, or vanishes without a close frame,
   makes ``send`` or ``async for`` raise ``ConnectionClosed``: routine on a network,
   so return quietly instead of letting ``websockets`` log a traceback.
2. ``main(port)`` serves ``handler`` on 127.0.0.1 with today's form,
   ``async with serve(handler, host, port) as server:`` … ``await server.serve_forever()``.
3. Before serving forever, ``main`` prints the port it really listens on — port 0
   asks the system for a free one — as ``listening on ws://127.0.0.1:PORT``, with
   ``flush=True``: a parent process reads that line to learn where to connect.
4. The port comes from the command line: ``python echo_server.py 8765``, or ``0``.
5. Ctrl-C (SIGINT) stops the server cleanly: every client is told 1001 (going away)
   and the program exits with status 0 within a few seconds, without a traceback.

Tips: ``server.sockets[0].getsockname()[1]`` is the port a server listens on.
``asyncio.run(main(port))`` belongs at the bottom of a script (notebook 02a). On
Ctrl-C, ``asyncio.run`` cancels ``main()`` — leaving ``async with serve(...)`` then
closes every connection with 1001 — and raises ``KeyboardInterrupt`` once ``main()``
has finished: catch it there. Notebook 02b, section 2, runs this file from a notebook.

Check your work with ``course_ws.check("echo_server")`` in a notebook, or
``course-ws check echo_server`` in a terminal.
"""

import asyncio
import contextlib
import sys

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

HOST = "127.0.0.1"


async def handler(websocket: ServerConnection) -> None:
    """Send every message back as it came, text as text and bytes as bytes."""
    try:
        async for message in websocket:  # ends quietly when the client closes (1000/1001)
            await websocket.send(message)
    except ConnectionClosed:
        pass  # gone mid-answer, or vanished (1006): routine on a network, not our bug


async def main(port: int) -> None:
    """Serve ``handler`` on HOST:port until the program is interrupted."""
    async with serve(handler, HOST, port) as server:
        listening = server.sockets[0].getsockname()[1]  # the real port, also when port is 0
        print(f"listening on ws://{HOST}:{listening}", flush=True)
        await server.serve_forever()  # Ctrl-C cancels it; the async with then closes with 1001


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8765
    # Ctrl-C: asyncio.run cancels main(), which closes every client with 1001, then
    # raises KeyboardInterrupt; suppressing it ends the program with status 0.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(port))
