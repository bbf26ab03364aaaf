"""course-ws: the companion package of a hands-on course on real-time WebSockets.

The names a notebook needs are here: ``serve_in_background`` runs any server of
the catalogue (or your own handler or ASGI app) in the background; ``check``
checks an exercise.
"""

import logging

from course_ws.hosting.background import BackgroundServer, serve_in_background
from course_ws.tooling.checks import check

# A library's loggers say nothing until the program configures logging (the CLI does;
# background servers route their own lines): without this, Python's last-resort handler
# would print the course's warnings (a worker restarted...) into whichever cell is running.
logging.getLogger("course_ws").addHandler(logging.NullHandler())

__all__ = ["BackgroundServer", "check", "serve_in_background"]
__version__ = "0.1.0"
