"""The chat's *store* on the Django ORM: ids, a bounded history and replay, in SQLite.

:class:`DjangoStore` is the :class:`~course_ws.chat.brokers.base.Store` of the
``channels`` server. What each method does, and where it runs:

- :meth:`DjangoStore.append` gives a message its room's next id and writes it,
  in **one transaction** in sync code (:func:`append_message`), run in the
  store's own thread by ``channels.db.database_sync_to_async``: the ORM is
  synchronous, and Django raises ``SynchronousOnlyOperation`` when it is
  called from the event loop. The transaction takes SQLite's write lock when it begins
  (``transaction_mode: IMMEDIATE`` in :mod:`.settings`), so two appends — in
  one process or several — never read the same counter: ids are strictly
  increasing per room and never reused. The oldest messages beyond
  ``history_size`` messages or ``history_bytes`` bytes are deleted in the same
  transaction, as :class:`~course_ws.chat.history.RoomHistory` forgets them.
- :meth:`DjangoStore.replay` reads the room's last id, then the kept messages
  after ``since`` *up to that id* (so a message appended in between is left to
  the live stream, and never sent twice).
- :attr:`DjangoStore.rooms` and :attr:`DjangoStore.bytes` are gauges read by
  ``/metrics`` on the event loop: they must not touch the database, so they
  are counters kept in memory, loaded by :meth:`DjangoStore.load` and moved by
  each append.

The store's own thread (one per store, not asgiref's thread shared by the
whole process) keeps one SQLite connection open (``CONN_MAX_AGE: None``) for
every call, whether it comes from a consumer or from a Django view (which
runs its sync code in a thread of its own request); it is closed in that
thread by :meth:`DjangoStore.aclose`. Channels' consumers call
``aclose_old_connections()`` on asgiref's thread before each event: they do
not queue behind the store's writes.

Nothing is forgotten when a room goes idle (``hold``/``release`` do nothing):
the history is on disk, not in memory, and outlives the process — that is the
point of this store.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from channels.db import database_sync_to_async  # type: ignore[import-untyped]
from django.db import connections, transaction  # type: ignore[import-untyped]
from django.db.models import Count, Sum  # type: ignore[import-untyped]

from course_ws.chat.history import DEFAULT_HISTORY, DEFAULT_HISTORY_BYTES
from course_ws.chat.protocol import Message
from course_ws.servers._channels.models import ChatMessage, Room

T = TypeVar("T")


@dataclass(frozen=True)
class Appended:
    """What one append did: the message, and how the kept history changed."""

    message: Message
    bytes_added: int
    """Bytes kept after the append minus before it (negative when a long message went out)."""
    new_room: bool
    """Whether the room kept no message before."""


def append_message(
    room: str, user: str, text: str, history_size: int, history_bytes: int
) -> Appended:
    """Store one message with ``room``'s next id and trim the room's history, atomically.

    Sync code: call it in a thread (``database_sync_to_async``), never on the loop.
    """
    with transaction.atomic():
        counter, _ = Room.objects.get_or_create(name=room)
        new_room = counter.kept_messages == 0
        before = counter.kept_bytes
        message = Message(counter.last_id + 1, room, user, text, round(time.time(), 3))
        ChatMessage.objects.create(
            room=room, id=message.id, user=user, text=text, ts=message.ts, size=message.size
        )
        counter.last_id = message.id
        counter.kept_messages += 1
        counter.kept_bytes += message.size
        _trim(counter, history_size, history_bytes)
        counter.save()
    return Appended(message, counter.kept_bytes - before, new_room)


def _trim(counter: Room, history_size: int, history_bytes: int) -> None:
    """Delete ``counter``'s oldest messages until both bounds hold (the newest always stays)."""

    def over() -> bool:
        return bool(
            counter.kept_messages > history_size
            or (counter.kept_bytes > history_bytes and counter.kept_messages > 1)
        )

    if not over():
        return
    oldest = ChatMessage.objects.filter(room=counter.name).order_by("id")
    cutoff = None
    for message_id, size in oldest.values_list("id", "size").iterator(chunk_size=100):
        cutoff = message_id
        counter.kept_messages -= 1
        counter.kept_bytes -= size
        if not over():
            break
    ChatMessage.objects.filter(room=counter.name, id__lte=cutoff).delete()


def replay_messages(room: str, since: int | None) -> tuple[int, list[Message]]:
    """``room``'s last id and its kept messages after ``since`` (see :meth:`DjangoStore.replay`).

    Sync code: call it in a thread.
    """
    last_id = Room.objects.filter(name=room).values_list("last_id", flat=True).first() or 0
    if since is None:
        return last_id, []
    if since > last_id:
        since = 0
    rows = ChatMessage.objects.filter(room=room, id__gt=since, id__lte=last_id).order_by("id")
    return last_id, [
        Message(row.id, room, row.user, row.text, row.ts)
        for row in rows.only("id", "user", "text", "ts")
    ]


def kept_totals() -> tuple[int, int]:
    """Rooms with a kept message, and the bytes kept for all rooms. Sync code."""
    totals = Room.objects.filter(kept_messages__gt=0).aggregate(
        rooms=Count("name"), kept=Sum("kept_bytes")
    )
    return int(totals["rooms"]), int(totals["kept"] or 0)


def close_connections() -> None:
    """Close this thread's database connections. Sync code."""
    connections.close_all()


class DjangoStore:
    """The chat's store in the database Django is configured with (:mod:`.settings`)."""

    def __init__(
        self, history_size: int = DEFAULT_HISTORY, history_bytes: int = DEFAULT_HISTORY_BYTES
    ) -> None:
        if history_size < 1 or history_bytes < 1:
            raise ValueError("a history keeps at least one message and one byte")
        self.history_size = history_size
        self.history_bytes = history_bytes
        self._rooms = 0
        self._bytes = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="course-ws database")

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in the store's thread, with Django's connection housekeeping."""
        call = database_sync_to_async(function, thread_sensitive=False, executor=self._thread)
        result: T = await call(*args)
        return result

    async def load(self) -> None:
        """Read the gauges' starting values from the database (after the migrations ran)."""
        self._rooms, self._bytes = await self.run(kept_totals)

    @property
    def rooms(self) -> int:
        """Rooms with history in the database (counted in memory: safe on the event loop)."""
        return self._rooms

    @property
    def bytes(self) -> int:
        """Bytes of history in the database (counted in memory: safe on the event loop)."""
        return self._bytes

    async def append(self, room: str, user: str, text: str) -> Message:
        appended = await self.run(
            append_message, room, user, text, self.history_size, self.history_bytes
        )
        self._rooms += appended.new_room
        self._bytes += appended.bytes_added
        return appended.message

    async def replay(self, room: str, since: int | None) -> tuple[int, list[Message]]:
        return await self.run(replay_messages, room, since)

    def hold(self, room: str) -> None:
        """Nothing to do: idle rooms keep their history on disk."""

    def release(self, room: str) -> None:
        """Nothing to do: idle rooms keep their history on disk."""

    async def aclose(self) -> None:
        """Close the store's database connection, in its thread, and end the thread."""
        try:
            await self.run(close_connections)
        finally:
            self._thread.shutdown(wait=False)
