"""``channels``: the course's chat on Django Channels, served by uvicorn, kept in SQLite.

The same endpoints and protocol as every chat server: ``/chat/{room}`` and
``/echo`` (consumers), ``GET /``, ``GET /healthz``, ``GET /metrics`` and
``POST /rooms/{room}/messages`` (Django views), refusals with the same
statuses and close codes. A Django project in the conventional layout, with
no scaffold to run it: :mod:`course_ws.servers._channels` (``settings``,
``models``, ``migrations``, ``consumers``, ``routing``, ``views``, ``urls``,
``asgi``; notebook 05 reads them).

What Channels changes, and what stays the chat core's:

- **The database is the store** (:mod:`~course_ws.servers._channels.store`):
  every message is a row in ``--database`` (SQLite; default
  ``~/.local/share/course-ws/chat.sqlite3``), with ids strictly increasing per
  room, so a restarted server replays what came before it with the same ids.
  Migrations run at startup, in a thread.
- **The channel layer is the bus** (:mod:`~course_ws.servers._channels.bus`):
  one group per room, one subscription per process, on the in-memory layer or,
  with ``--broker redis://…``, ``channels_redis``' ``RedisChannelLayer``.
  Messages it loses or delivers out of order are filled from the store by id;
  only a gap the store no longer has closes the room's members with 1012, so
  that they resume.
- **Consumers are event-driven** (:mod:`~course_ws.servers._channels.consumers`):
  ``connect`` admits (refusing before accept with a real HTTP status) and joins,
  ``receive`` handles a frame, ``disconnect`` leaves.
- The rest is the ASGI servers': a bounded outbox per member, the welcome and
  replay sent directly, 1001 at shutdown from the course's uvicorn host,
  compression off, every option (``--ws``, keepalive, ``--max-size``,
  ``--close-timeout``).

Django's settings belong to the process: one process serves one database
(a second ``channels`` server in the same process must use the same one).
Daphne (``daphne``, Channels' own server, ≥ 4.2.2) serves the same app too;
it closes idle connections after 24 hours by default and cannot refuse a
handshake with any status but 403.
"""

from __future__ import annotations

import socket

from course_ws.options import ServeOptions
from course_ws.servers._asgi_chat import start_chat_app
from course_ws.servers._asgi_host import ASGIApp, StartedUvicorn
from course_ws.servers._channels.settings import configure


def create_app(options: ServeOptions | None = None) -> ASGIApp:
    """Configure Django for ``options.database`` and return the server's ASGI app.

    ``uvicorn course_ws.servers.channels:create_app --factory`` serves it with
    default options (without the host's 1001 on shutdown: :func:`start` adds that).
    """
    options = options or ServeOptions()
    configure(options.database, options.host)
    # Django's modules can be imported only once its settings are configured.
    from course_ws.servers._channels.asgi import application
    from course_ws.servers._channels.chat import ChannelsChat

    return application(ChannelsChat(options))


async def start(options: ServeOptions, sock: socket.socket) -> StartedUvicorn:
    """Serve the chat on ``sock`` with uvicorn, through the course's ASGI host."""
    configure(options.database, options.host)
    from course_ws.servers._channels.asgi import application
    from course_ws.servers._channels.chat import ChannelsChat

    chat = ChannelsChat(options)
    return await start_chat_app(application(chat), options, sock, chat.metrics)
