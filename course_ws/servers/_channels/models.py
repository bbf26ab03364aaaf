"""The chat's tables: one row per room (its counter), one row per message kept.

A message's id is its room's counter plus one, taken and written in one
transaction (:mod:`.store`): ids are strictly increasing per room, never reused,
and the same after a restart. ``(room, id)`` is the primary key (Django 5.2's
:class:`~django.db.models.CompositePrimaryKey`), which is also the index that
replays and trims a room's history in id order.
"""

from __future__ import annotations

from django.db import models  # type: ignore[import-untyped]


class Room(models.Model):  # type: ignore[misc]
    """A room's counter and the size of the history kept for it."""

    name = models.CharField(max_length=64, primary_key=True)
    last_id = models.BigIntegerField(default=0)
    """The id of the room's latest message (0: none yet); the next one gets ``last_id + 1``."""
    kept_messages = models.IntegerField(default=0)
    """Messages of the room still kept (at most ``--history-size``)."""
    kept_bytes = models.BigIntegerField(default=0)
    """Their size, as :attr:`course_ws.chat.protocol.Message.size` counts it."""

    def __str__(self) -> str:
        return f"{self.name} (last id {self.last_id})"


class ChatMessage(models.Model):  # type: ignore[misc]
    """One message said in a room, as the chat protocol sends it."""

    pk = models.CompositePrimaryKey("room", "id")
    room = models.CharField(max_length=64)
    id = models.BigIntegerField()
    user = models.CharField(max_length=32)
    text = models.TextField()
    ts = models.FloatField()
    """Seconds since the epoch, as in the ``message`` event."""
    size = models.IntegerField()
    """Bytes this message counts for in the room's history bound."""

    class Meta:
        db_table = "course_ws_chat_message"

    def __str__(self) -> str:
        return f"{self.room} #{self.id} {self.user}: {self.text[:40]}"
