"""The chat as a Django app: what ``INSTALLED_APPS`` names to get its model and migrations."""

from __future__ import annotations

from django.apps import AppConfig  # type: ignore[import-untyped]


class ChatConfig(AppConfig):  # type: ignore[misc]
    """The course's chat app: tables ``course_ws_chat_room`` and ``course_ws_chat_message``."""

    name = "course_ws.servers._channels"
    label = "course_ws_chat"
    verbose_name = "course-ws chat"
    default_auto_field = "django.db.models.BigAutoField"
