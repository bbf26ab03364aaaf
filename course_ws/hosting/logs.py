"""Keeping background servers' log lines out of notebook cells.

A server running in a background thread logs while some *other* cell runs; if
those lines reach stderr, Jupyter shows them in that cell and nbval sees
output that changes from run to run. The runner therefore routes every record
logged in a server's thread into that server's own bounded list of lines
(``BackgroundServer.logs``), and lets records from any other thread through
as if nothing had changed.
"""

from __future__ import annotations

import logging
import threading
from collections import deque

SERVER_LOGGERS = ("course_ws.servers", "websockets", "uvicorn", "django", "daphne")
"""Loggers whose records the router takes; ``asyncio`` is filtered separately."""

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ServerLog:
    """The last ``maxlen`` lines one server logged at ``level`` or above."""

    def __init__(self, level: int, maxlen: int = 1000) -> None:
        self.level = level
        self.lines: deque[str] = deque(maxlen=maxlen)


class ThreadLogRouter(logging.Handler):
    """Send records from registered server threads to their :class:`ServerLog`."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter(LOG_FORMAT))
        self._logs: dict[int, ServerLog] = {}
        self._lock_logs = threading.Lock()

    def claims(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` was logged in a registered server thread."""
        return record.thread in self._logs

    def emit(self, record: logging.LogRecord) -> None:
        log = self._logs.get(record.thread or 0)
        if log is None:
            # Not a server thread: behave as if this logger still propagated.
            logging.getLogger().handle(record)
        elif record.levelno >= log.level:
            log.lines.append(self.format(record))

    def register(self, thread_id: int, log: ServerLog) -> None:
        """Route records from ``thread_id`` to ``log`` from now on."""
        with self._lock_logs:
            self._logs[thread_id] = log
            self._apply_levels()

    def unregister(self, thread_id: int) -> None:
        """Stop routing records from ``thread_id``."""
        with self._lock_logs:
            self._logs.pop(thread_id, None)
            self._apply_levels()

    def _apply_levels(self) -> None:
        # Loggers stay as quiet as the most talkative server needs: libraries
        # check isEnabledFor() before formatting per-frame debug lines.
        level = min((log.level for log in self._logs.values()), default=logging.WARNING)
        for name in SERVER_LOGGERS:
            logging.getLogger(name).setLevel(level)


class _AsyncioFilter(logging.Filter):
    """Divert ``asyncio`` records from server threads (``Task exception was never retrieved``)."""

    def __init__(self, router: ThreadLogRouter) -> None:
        super().__init__()
        self.router = router

    def filter(self, record: logging.LogRecord) -> bool:
        if self.router.claims(record):
            self.router.handle(record)
            return False
        return True


_router: ThreadLogRouter | None = None
_install_lock = threading.Lock()


def log_router() -> ThreadLogRouter:
    """The process-wide router, installed on first use."""
    global _router
    with _install_lock:
        if _router is None:
            router = ThreadLogRouter()
            for name in SERVER_LOGGERS:
                logger = logging.getLogger(name)
                logger.addHandler(router)
                logger.propagate = False
            logging.getLogger("asyncio").addFilter(_AsyncioFilter(router))
            _router = router
        return _router
