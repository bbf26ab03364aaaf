"""The HTTP routes (``ROOT_URLCONF``): Django's ``path()`` to each view of :mod:`.views`.

Django matches a path without its leading ``/``. ``handler404`` answers
every path that matches nothing, in plain text like every other server.
"""

from __future__ import annotations

from django.urls import path  # type: ignore[import-untyped]

from course_ws.servers._channels import views

urlpatterns = [
    path("", views.page),
    path("healthz", views.healthz),
    path("metrics", views.metrics),
    path("rooms/<str:room>/messages", views.post_message),
    path("echo", views.upgrade_required),
    path("chat/<str:room>", views.upgrade_required),
]

handler404 = views.not_found
