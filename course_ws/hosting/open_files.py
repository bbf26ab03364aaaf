"""A server's limit of open files: one per connection, so it is raised before listening.

A shell's default soft limit (``ulimit -n``) is often 1,024: a server started
from it refuses connections near a thousand with "Too many open files"
(``EMFILE``; asyncio then stops accepting for a second at a time). A process may
raise its soft limit up to its hard limit without privileges, so ``course-ws
serve`` does, before it listens (its workers inherit it), and says so; only the
hard limit needs whoever starts the server.
"""

from __future__ import annotations

import logging
import resource

from course_ws.load.system import OpenFilesLimit, raise_open_files_limit

LOW_OPEN_FILES = 4096
"""Below this many open files allowed, a server is warned that it can hold few connections."""
RESERVED_FILES = 32
"""Open files a server uses besides its connections (listening socket, logs, Redis, ...)."""

logger = logging.getLogger("course_ws.hosting")


def raise_for_serving() -> OpenFilesLimit:
    """Raise this process's soft limit of open files to its hard limit (logged at debug
    level: a server's first lines are its own); warn when that still allows fewer than
    :data:`LOW_OPEN_FILES` connections, naming how to raise the hard limit."""
    limit = raise_open_files_limit()
    logger.debug("%s", limit)
    if limit.soft != resource.RLIM_INFINITY and limit.soft < LOW_OPEN_FILES:
        logger.warning(
            "only %d open files allowed (the hard limit): at most about %d connections; "
            "raise the hard limit where the server starts: LimitNOFILE=65536 in its "
            "systemd unit, or `ulimit -Hn 65536` as root",
            limit.soft,
            max(0, limit.soft - RESERVED_FILES),
        )
    return limit
