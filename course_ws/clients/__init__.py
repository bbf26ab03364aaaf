"""Client-side building blocks: reconnecting with backoff, sending on a schedule, waiting.

Chapter 02 builds a client that survives a server restart out of three small
pieces, each usable on its own:

* :class:`Backoff` — the delays between reconnection attempts, to pass as
  ``connect(url, reconnect_delays=Backoff(...))``;
* :func:`keep_connected` — ``async for websocket in connect(url)`` with a
  timeline of what happened (:class:`ConnectionEvent`) and a clean stop;
* :func:`send_every` — one message every *interval* seconds, on a fixed
  schedule, until the connection closes;

and :func:`wait_until`, a bounded wait for a condition, for notebooks and tests.
"""

from course_ws.clients.backoff import Backoff
from course_ws.clients.periodic import send_every
from course_ws.clients.reconnecting import ConnectionEvent, keep_connected
from course_ws.clients.waiting import wait_until

__all__ = ["Backoff", "ConnectionEvent", "keep_connected", "send_every", "wait_until"]
