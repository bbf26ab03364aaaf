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

from websockets.asyncio.server import ServerConnection

HOST = "127.0.0.1"


async def handler(websocket: ServerConnection) -> None:
    """Send every message back as it came, text as text and bytes as bytes."""
    # TODO 1: receive message after message with ``async for`` and send each one back.
    # TODO 1: catch ConnectionClosed around the loop: a client that leaves is no error.


async def main(port: int) -> None:
    """Serve ``handler`` on HOST:port until the program is interrupted."""
    # TODO 2: ``async with serve(handler, HOST, port) as server:``
    #         (``from websockets.asyncio.server import serve``).
    # TODO 3: inside it, print ``listening on ws://127.0.0.1:PORT`` with the port the server
    #         really listens on, and ``flush=True``;
    # TODO 2: then ``await server.serve_forever()``.


if __name__ == "__main__":
    port = 8765  # TODO 4: take the port from the command line (``sys.argv[1]``) instead.
    # TODO 5: catch the KeyboardInterrupt that ``asyncio.run`` raises after Ctrl-C,
    #         so that the program exits with status 0 instead of a traceback.
    asyncio.run(main(port))
