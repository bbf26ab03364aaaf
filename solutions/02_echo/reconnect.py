"""Exercise 02 · reconnect — a client that keeps collecting while its server comes and goes.

Write ``collect(url, count, reconnect_delays)``: connect to ``url``, gather the
first ``count`` messages the server sends, and return them as a list. The server
is unreliable, and your client must not care:

1. it sometimes ends a connection politely (1001, going away): connect again;
2. it sometimes drops a connection abruptly (1006, no close frame), which makes
   ``async for message in websocket`` raise ``ConnectionClosedError``: catch it,
   and connect again;
3. it may not be listening at all for a while: keep trying, waiting between
   attempts the delays that ``reconnect_delays`` gives (pass it on to ``connect``);
4. when you have ``count`` messages, close the connection normally (code 1000)
   and return them. Careful: leaving ``async for websocket in connect(...)`` with
   ``return`` closes the connection with 1011 (internal error) unless you
   ``await websocket.close()`` first.

Tip: ``websockets`` reconnects by itself when you *iterate* over
``connect(url, reconnect_delays=...)`` instead of entering it with ``async with``
(notebook 02b, section 5).

Check your work with ``course_ws.check("reconnect")`` in a notebook, or
``course-ws check reconnect`` in a terminal.
"""

from collections.abc import Callable, Generator

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError


async def collect(
    url: str, count: int, reconnect_delays: Callable[[], Generator[float]]
) -> list[str]:
    """The first ``count`` messages from ``url``, across as many connections as it takes."""
    messages: list[str] = []
    # Failed attempts (nothing listening, a timeout) are retried inside connect(),
    # after the next of reconnect_delays; a successful connection resets the delays.
    async for websocket in connect(url, reconnect_delays=reconnect_delays):
        try:
            async for message in websocket:  # ends quietly on 1000 and 1001
                messages.append(message)
                if len(messages) == count:
                    await websocket.close()  # 1000, before leaving the loop
                    return messages
        except ConnectionClosedError:
            continue  # dropped (1006) or closed with an error code: connect again
    return messages  # not reached: the loop above reconnects for ever
