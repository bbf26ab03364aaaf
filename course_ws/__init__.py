"""course-ws: the companion package of a hands-on course on real-time WebSockets.

The names a notebook needs are here: ``serve_in_background`` runs any server of
the catalogue (or your own handler or ASGI app) in the background; ``check``
checks an exercise.
"""

from course_ws.hosting.background import BackgroundServer, serve_in_background
from course_ws.tooling.checks import check

__all__ = ["BackgroundServer", "check", "serve_in_background"]
__version__ = "0.1.0"
