"""The chat of one ``channels`` server: one :class:`ChatService` over the database and the layer.

Every consumer and view of a server gets the same :class:`ChannelsChat`
(consumers through ``as_asgi(chat=...)``, views through the request's scope):
admission, member sessions, rooms, limits and metrics are the chat core's
(:mod:`course_ws.chat`), as on every other server. What is Channels' here:

- the **store** is the database (:class:`~.store.DjangoStore`), migrated at
  startup (:meth:`ChannelsChat.start`) in the store's thread, never on the
  event loop;
- the **bus** is the channel layer's groups (:class:`~.bus.ChannelLayerBus`),
  on a layer of this server's own: with ``--broker memory://``, made from
  ``CHANNEL_LAYERS["default"]`` (an in-memory layer belongs to one event
  loop, and two servers in one process — a notebook, the tests — must not
  share one); with ``--broker redis://HOST:PORT/DB``, a ``channels_redis``
  ``RedisChannelLayer`` on that Redis (:func:`.settings.make_layer`: Django's
  settings are the process's, the broker is the server's), checked at
  startup: an unreachable Redis raises
  :class:`~course_ws.chat.brokers.BrokerUnavailable` before the server listens;
- the bus fills what the layer lost or brought late from the store, by id;
  when the store no longer has it, the room's local members are closed with
  **1012** (:meth:`ChannelsChat.resume_room`): they reconnect with
  ``?since=`` and the store gives them what it has.
"""

from __future__ import annotations

import fcntl
import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from channels import DEFAULT_CHANNEL_LAYER  # type: ignore[import-untyped]
from channels.layers import channel_layers  # type: ignore[import-untyped]
from django.conf import settings  # type: ignore[import-untyped]
from django.core.management import call_command  # type: ignore[import-untyped]

from course_ws.chat.brokers import Broker
from course_ws.chat.metrics import ServerMetrics
from course_ws.chat.service import ChatService
from course_ws.options import ServeOptions
from course_ws.servers._asgi_chat import Member, OutboxFanout
from course_ws.servers._channels.bus import ChannelLayerBus
from course_ws.servers._channels.settings import check_broker, make_layer
from course_ws.servers._channels.store import DjangoStore

logger = logging.getLogger("course_ws.servers.channels")

_migrating = threading.Lock()
"""Two servers of one process starting together must not both create the tables."""


def migrate() -> None:
    """Apply every migration (the chat's, and those of auth, contenttypes, sessions). Sync code.

    Several processes may start on one database at once (``--workers``, two
    servers on one file): Django's ``migrate`` is not safe against that — the
    second creates a table the first has just created, and fails with "table
    already exists" (seen with three servers started together on a new file).
    So an exclusive lock on a file beside the database (``flock``, released
    when the process ends, however it ends) lets one process migrate at a
    time; the next ones find nothing left to do.
    """
    database = Path(settings.DATABASES["default"]["NAME"])
    with _migrating, open(database.with_name(database.name + ".migrate-lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            call_command("migrate", interactive=False, verbosity=0)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def channel_layer_for(broker: str) -> Any:
    """A new channel layer for a server with ``--broker broker``.

    ``memory://``: from ``CHANNEL_LAYERS["default"]``; ``redis://``: checked
    first (blocking, two seconds at most; ``BrokerUnavailable`` if Redis
    does not answer), then ``channels_redis``' layer on it.
    """
    if urlsplit(broker).scheme == "memory":
        return channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
    check_broker(broker)
    return make_layer(broker)


class ChannelsChat:
    """The chat service of one ``channels`` server, and what its consumers and views share."""

    def __init__(self, options: ServeOptions, layer: Any | None = None) -> None:
        self.options = options
        self.metrics = ServerMetrics()
        self.fanout = OutboxFanout(self.metrics)
        self.owns_layer = layer is None
        self.layer = layer if layer is not None else channel_layer_for(options.broker)
        self.store = DjangoStore(options.history_size, options.history_bytes)
        self.bus = ChannelLayerBus(self.layer, store=self.store)
        self.service: ChatService[Member] = ChatService(
            Broker(self.store, self.bus), self.fanout, options, self.metrics
        )

    async def start(self) -> None:
        """Migrate the database (in the store's thread) and load the history gauges."""
        await self.store.run(migrate)
        await self.store.load()

    async def aclose(self) -> None:
        """Close the bus and the store (after the host closed every WebSocket), and the
        layer's connections if the layer is this server's own."""
        await self.service.aclose()
        close_pools = getattr(self.layer, "close_pools", None)  # channels_redis' layer
        if self.owns_layer and close_pools is not None:
            await close_pools()
