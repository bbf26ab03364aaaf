"""Django settings for the ``channels`` server, configured in code: no project scaffold to run it.

A Django project usually keeps these in ``settings.py`` and points
``DJANGO_SETTINGS_MODULE`` at it; here :func:`configure` calls
``django.conf.settings.configure(...)`` and ``django.setup()`` once per
process, so ``course-ws serve channels``, ``serve_in_background("channels")``
and a notebook's consumers all run the same Django without any file of
settings. Django's settings are global to the process: :func:`configure` may
be called again with the *same* database (it returns at once), never with
another one (:class:`RuntimeError` says so).

What each setting is for:

- ``INSTALLED_APPS``: ``channels`` (its ``runworker`` and test tools),
  Django's ``auth``, ``contenttypes`` and ``sessions`` (what
  ``AuthMiddlewareStack`` reads to put ``scope["user"]``), and the course's
  chat app (:mod:`course_ws.servers._channels`, label ``course_ws_chat``, its
  model and migrations). ``daphne`` is *not* listed: it is needed first in
  ``INSTALLED_APPS`` only to make ``manage.py runserver`` serve ASGI, and the
  course serves with uvicorn.
- ``DATABASES``: one SQLite file (``--database``), with ``transaction_mode``
  ``IMMEDIATE`` (Django 5.1+): a write transaction takes SQLite's write lock
  when it begins, so two concurrent appends cannot both read the same last id
  and then fail to upgrade their lock (``database is locked``).
  ``init_command`` puts the file in write-ahead-log mode with
  ``synchronous=NORMAL`` (SQLite's advice for WAL): a commit no longer waits
  for the disk twice, and readers never wait for the writer — three times
  the appends per second measured here (1,100 against 360). A committed message
  survives the process being killed; only a power cut may lose the last ones.
  The file gets two companions while open, ``-wal`` and ``-shm``.
  ``CONN_MAX_AGE: None`` keeps the store's one connection open
  (:mod:`.store` runs every query in its own thread, and closes it at shutdown).
- ``CHANNEL_LAYERS``: the in-memory layer, with a large capacity: the bus of
  one process (``--broker memory://``, the default). Settings belong to the
  process, and a layer to one server, so each server builds its own layer
  from its ``--broker`` with :func:`make_layer` (:mod:`.chat`);
  ``CHANNEL_LAYERS`` is what ``get_channel_layer()`` gives other code (a
  notebook's ``async_to_sync(group_send)``).
- ``ALLOWED_HOSTS``: loopback names, plus the address the server listens on;
  ``AllowedHostsOriginValidator`` also accepts browser ``Origin`` headers from
  exactly these hosts.

**Several processes: ``--broker redis://HOST:PORT/DB``** gives each server
``channels_redis.core.RedisChannelLayer`` (:func:`channel_layer_config`), with
the database still the store. ``channels_redis`` 4.3 has two layers; they
differ in what happens to a message that cannot be delivered at once:

- ``RedisChannelLayer`` (``core``) is a **mailbox**: ``group_send`` writes the
  message, inside Redis, into a sorted set per receiving process (all the
  channels that ``new_channel()`` makes in one layer share one key), and each
  process pops its own with ``BZPOPMIN``. What is sent while a process is
  reconnecting waits for it; with the course's Redis (append-only file) it
  even outlives a restart of Redis. A group is a sorted set of channels,
  each scored with the time it was added: ``group_send`` drops members older
  than ``group_expiry``, so a process that died stops costing writes then.
  Its limits are explicit: a mailbox over ``capacity`` is skipped by
  ``group_send`` *silently* (only ``send`` raises ``ChannelFull``), a message
  older than ``expiry`` seconds is deleted unread, and a lost connection
  raises from ``receive``/``group_send`` (measured: ``ConnectionError`` at
  once) — so the bus knows an outage happened.
- ``RedisPubSubChannelLayer`` (``pubsub``) is a **broadcast**: Redis
  ``PUBLISH``/``SUBSCRIBE``, one subscription per group and process, nothing
  kept in Redis, no capacity (an unbounded queue per channel), no expiry. It
  reconnects and resubscribes by itself, but tells nobody: its receive task
  logs the error and retries every second, and what was published meanwhile
  is gone without a trace (``on_disconnect``/``on_reconnect`` are accepted and
  never called in 4.3.0). A bus that must know when it lost something cannot
  be built on it.

So the ``core`` layer, tuned for a chat whose store is elsewhere:

- ``capacity`` :data:`REDIS_CAPACITY` (default 100): one mailbox holds the
  events of *every* room for one process, so 100 is a fraction of a second of
  a busy process; 10,000 absorbs a 10-second stall at 1,000 events per second,
  and a full mailbox costs Redis about 4 MB (measured: 10,000 events of
  60-character messages, 4.2 MB by ``MEMORY USAGE``). Past it, messages are
  dropped (and found again in the database by id, :mod:`.bus`). The same
  number bounds the process's own buffer per channel (``channels_redis``
  drops the oldest there).
- ``expiry`` :data:`REDIS_EXPIRY`: a live event unread for a minute belongs
  to a process that is stuck or gone; the database has it for whoever
  resumes. The default, kept.
- ``group_expiry`` :data:`REDIS_GROUP_EXPIRY` (default a day): five minutes,
  so that a process killed without leaving its groups is written to for five
  minutes, not a day; each live subscription renews its membership every
  half of that, and again after any outage.
- ``prefix`` :data:`REDIS_PREFIX`, so that the layer's keys never meet another
  application's ``asgi`` keys, nor the Redis broker's ``course-ws:{room}:*``.
- the connections (:data:`REDIS_CONNECTION`): a two-second connect timeout
  (an unreachable Redis fails fast), a read timeout above ``BZPOPMIN``'s five
  seconds (a half-open connection is noticed), and *no* automatic retry, so
  that every lost connection reaches the bus, which reconnects with backoff,
  re-joins its groups and catches its rooms up from the database.

Whether Redis answers is checked once, at startup (:func:`check_broker`): an
unreachable Redis is one line and exit status 1, as for every server.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
CHAT_APP = "course_ws.servers._channels"
CHANNEL_CAPACITY = 10_000
"""Messages the in-memory layer holds per channel before it drops (it is at-most-once)."""
GROUP_EXPIRY = 86_400
"""Seconds a group membership lasts on a channel layer unless renewed (Channels' default)."""

REDIS_CAPACITY = 10_000
"""Messages one process's mailbox holds on the Redis layer before ``group_send`` skips it."""
REDIS_EXPIRY = 60
"""Seconds a message waits unread in a mailbox on the Redis layer before it is deleted."""
REDIS_GROUP_EXPIRY = 300
"""Seconds a group membership lasts on the Redis layer unless renewed (:mod:`.bus` renews)."""
REDIS_PREFIX = "course-ws:channels:"
"""Start of every key the Redis layer writes."""
REDIS_CONNECTION: dict[str, Any] = {
    "socket_connect_timeout": 2.0,
    "socket_timeout": 10.0,
    "socket_keepalive": True,
}
"""redis-py options of the Redis layer's connections (no ``retry``: the bus recovers)."""
MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"
REDIS_LAYER = "channels_redis.core.RedisChannelLayer"

SQLITE_PRAGMAS = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
"""Run on each new SQLite connection: write-ahead log, one sync per checkpoint, not per commit."""

_lock = threading.Lock()
_configured_database: Path | None = None


def configured_database() -> Path | None:
    """The database Django was configured with in this process, or ``None`` if not yet."""
    return _configured_database


def channel_layer_config(broker: str) -> dict[str, Any]:
    """The ``CHANNEL_LAYERS`` entry (``BACKEND``, ``CONFIG``) of a server with ``--broker broker``.

    ``memory://``: Channels' in-memory layer (this process only);
    ``redis://HOST:PORT/DB``: ``channels_redis``' ``RedisChannelLayer`` on that
    Redis, tuned as the module docstring says. :class:`ValueError` otherwise.
    """
    scheme = urlsplit(broker).scheme
    if scheme == "memory":
        return {
            "BACKEND": MEMORY_LAYER,
            "CONFIG": {"capacity": CHANNEL_CAPACITY, "expiry": 60, "group_expiry": GROUP_EXPIRY},
        }
    if scheme == "redis":
        return {
            "BACKEND": REDIS_LAYER,
            "CONFIG": {
                "hosts": [{"address": broker, **REDIS_CONNECTION}],
                "prefix": REDIS_PREFIX,
                "capacity": REDIS_CAPACITY,
                "expiry": REDIS_EXPIRY,
                "group_expiry": REDIS_GROUP_EXPIRY,
            },
        }
    raise ValueError(f"no channel layer for the broker {broker!r}: use memory:// or redis://")


def make_layer(broker: str) -> Any:
    """A new channel layer for a server with ``--broker broker`` (its own: not shared)."""
    from django.utils.module_loading import import_string  # type: ignore[import-untyped]

    config = channel_layer_config(broker)
    return import_string(config["BACKEND"])(**config["CONFIG"])


def check_broker(broker: str) -> None:
    """Raise :class:`~course_ws.chat.brokers.BrokerUnavailable` (one line) if Redis does not
    answer within two seconds; nothing to check for ``memory://``. Blocking: call it at startup."""
    if urlsplit(broker).scheme == "redis":
        from course_ws.chat.brokers.redis import check_reachable

        check_reachable(broker)


def django_settings(database: Path, host: str = "127.0.0.1") -> dict[str, Any]:
    """The settings :func:`configure` applies, for ``database`` and a server on ``host``."""
    allowed = list(dict.fromkeys((*LOOPBACK_HOSTS, host)))
    return {
        "DEBUG": False,
        "SECRET_KEY": "course-ws: sessions are not used for anything secret here",
        "ALLOWED_HOSTS": allowed,
        "INSTALLED_APPS": [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "channels",
            CHAT_APP,
        ],
        "DATABASES": {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(database),
                "OPTIONS": {
                    "transaction_mode": "IMMEDIATE",
                    "timeout": 20,
                    "init_command": SQLITE_PRAGMAS,
                },
                "CONN_MAX_AGE": None,
            }
        },
        "CHANNEL_LAYERS": {"default": channel_layer_config("memory://")},
        "ROOT_URLCONF": "course_ws.servers._channels.urls",
        "MIDDLEWARE": [],
        "USE_TZ": True,
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "LOGGING_CONFIG": None,
    }


def configure(database: str | Path, host: str = "127.0.0.1") -> Path:
    """Configure Django for this process with its chat in ``database``; return the file's path.

    Creates the file's folder. Idempotent for the same database; a different
    one raises :class:`RuntimeError` (Django's settings are global to a process).
    """
    global _configured_database
    path = Path(database).expanduser().resolve()
    with _lock:
        if _configured_database is not None:
            if path != _configured_database:
                raise RuntimeError(
                    f"Django is already configured in this process with the database "
                    f"{_configured_database}; start the channels server with that one, "
                    f"or in another process, not with {path}"
                )
            return path
        import django  # type: ignore[import-untyped]
        from django.conf import settings  # type: ignore[import-untyped]

        if settings.configured:
            raise RuntimeError("Django was configured by someone else in this process")
        path.parent.mkdir(parents=True, exist_ok=True)
        settings.configure(**django_settings(path, host))
        django.setup()
        # Django logs every response of 400 or more as a warning, from a worker thread
        # that the course's log routing cannot tell from a notebook's own: the servers
        # log their refusals themselves, so only its errors (500) are kept.
        logging.getLogger("django.request").setLevel(logging.ERROR)
        _configured_database = path
    return path
