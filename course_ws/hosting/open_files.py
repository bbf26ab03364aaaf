"""A server's limit of open files: one per connection, so it is raised before listening.

A shell's default soft limit (``ulimit -n``) is often 1,024: a server started
from it refuses connections near a thousand with "Too many open files"
(``EMFILE``; asyncio then stops accepting for a second at a time). A process may
raise its soft limit up to its hard limit without privileges, so ``course-ws
serve`` does, before it listens (its workers inherit it; logged at debug level),
and warns when even the hard limit is low: only the hard limit needs whoever
starts the server.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

LOW_OPEN_FILES = 4096
"""Below this many open files allowed, a server is warned that it can hold few connections."""

logger = logging.getLogger("course_ws.hosting")


@dataclass(frozen=True)
class OpenFilesLimit:
    """This process's ``RLIMIT_NOFILE``: its soft limit before and after raising, and the hard."""

    before: int
    soft: int
    hard: int

    def __str__(self) -> str:
        if self.before == self.soft:
            return f"open files: soft limit {self.soft:,} (already the hard limit)"
        return (
            f"open files: soft limit raised from {self.before:,} to {self.soft:,} (the hard limit)"
        )


def raise_open_files_limit() -> OpenFilesLimit:
    """Raise this process's soft limit of open files to the hard limit; children inherit it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return OpenFilesLimit(soft, resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)


def raise_for_serving() -> OpenFilesLimit:
    """Raise this process's soft limit of open files to its hard limit (logged at debug
    level: a server's first lines are its own); warn when that still allows fewer than
    :data:`LOW_OPEN_FILES` connections, naming how to raise the hard limit."""
    limit = raise_open_files_limit()
    logger.debug("%s", limit)
    if limit.soft != resource.RLIM_INFINITY and limit.soft < LOW_OPEN_FILES:
        logger.warning(
            "only %d open files allowed (the hard limit), one per connection: raise the "
            "hard limit where the server starts: LimitNOFILE=65536 in its systemd unit, "
            "or `ulimit -n 65536` as root",
            limit.soft,
        )
    return limit
