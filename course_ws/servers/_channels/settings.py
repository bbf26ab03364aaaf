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
  one process. Chapter 06 puts ``channels_redis`` here for several.
- ``ALLOWED_HOSTS``: loopback names, plus the address the server listens on;
  ``AllowedHostsOriginValidator`` also accepts browser ``Origin`` headers from
  exactly these hosts.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")
CHAT_APP = "course_ws.servers._channels"
CHANNEL_CAPACITY = 10_000
"""Messages the in-memory layer holds per channel before it drops (it is at-most-once)."""
GROUP_EXPIRY = 86_400
"""Seconds a group membership lasts on a channel layer unless renewed (Channels' default)."""

SQLITE_PRAGMAS = "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
"""Run on each new SQLite connection: write-ahead log, one sync per checkpoint, not per commit."""

_lock = threading.Lock()
_configured_database: Path | None = None


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
        "CHANNEL_LAYERS": {
            "default": {
                "BACKEND": "channels.layers.InMemoryChannelLayer",
                "CONFIG": {
                    "capacity": CHANNEL_CAPACITY,
                    "expiry": 60,
                    "group_expiry": GROUP_EXPIRY,
                },
            }
        },
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
