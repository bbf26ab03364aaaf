"""Running a server in the background of a notebook, a test or a script.

A Jupyter kernel already runs an event loop in its main thread, so
``asyncio.run(main())`` raises there, and a server started on the kernel's
loop stops whenever a cell blocks. ``serve_in_background`` gives the server a
thread and an event loop of its own instead: cells stay free to run clients,
blocking or async, and ``stop()`` shuts it down cleanly.

    >>> with serve_in_background("echo") as server:
    ...     print(server.url)
    ws://127.0.0.1:...
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import fields
from types import TracebackType
from typing import Any

from course_ws.hosting.catalogue import lookup
from course_ws.hosting.listening import bind_listener, socket_address, url_host
from course_ws.hosting.logs import ServerLog, log_router
from course_ws.options import ServeOptions
from course_ws.servers import StartedServer, StartServer

STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0
"""Enough for every client to answer the close frame (the servers wait 5 s at most)."""


class BackgroundServer:
    """A server running in its own thread and event loop.

    ``url`` is the WebSocket base URL (``ws://127.0.0.1:PORT``), ``http_url`` the
    same for plain HTTP; ``logs`` holds the server's recent log lines, which are
    kept out of notebook output. ``stop()`` closes clients with 1001 and frees
    the port; using the object in a ``with`` block calls it for you.
    """

    def __init__(self, name: str, start: StartServer, options: ServeOptions) -> None:
        self.name = name
        self.options = options
        self._log = ServerLog(getattr(logging, options.log_level.upper()))
        self._sock = bind_listener(options.host, options.port)
        self.host, self.port = socket_address(self._sock)
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._main_task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(
            target=self._run, args=(start,), name=f"course-ws {name}:{self.port}", daemon=True
        )
        self._stopped = False

    @property
    def url(self) -> str:
        """``ws://host:port``; append the endpoint path (``server.url + "/echo"``)."""
        return f"ws://{url_host(self.host)}:{self.port}"

    @property
    def http_url(self) -> str:
        """``http://host:port`` for pages and ``/healthz``."""
        return f"http://{url_host(self.host)}:{self.port}"

    @property
    def logs(self) -> list[str]:
        """The server's most recent log lines, oldest first."""
        return list(self._log.lines)

    @property
    def running(self) -> bool:
        """Whether the server thread is alive and has not been asked to stop."""
        return self._thread.is_alive() and not self._stopped

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<BackgroundServer {self.name} {self.url} {state}>"

    def start(self, timeout: float = STARTUP_TIMEOUT) -> BackgroundServer:
        """Start the thread and wait until the server accepts connections.

        The server's own exception is raised here if it fails to start, and
        :class:`TimeoutError` if it neither starts nor fails within ``timeout``.
        """
        self._thread.start()
        try:
            self._ready.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            self._abandon()
            raise TimeoutError(
                f"server {self.name!r} did not start within {timeout:g} s; see .logs"
            ) from None
        except BaseException:
            self._thread.join(STOP_TIMEOUT)
            self._release()
            raise
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Close every client with 1001, stop listening and end the thread. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._stop_requested is not None:
            self._call_in_loop(self._stop_requested.set)
        self._thread.join(timeout)
        self._release()
        if self._thread.is_alive():
            raise TimeoutError(f"server {self.name!r} did not stop within {timeout:g} s")

    def __enter__(self) -> BackgroundServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- inside the server thread -------------------------------------------------

    def _run(self, start: StartServer) -> None:
        router = log_router()
        router.register(threading.get_ident(), self._log)
        try:
            asyncio.run(self._serve(start))
        except BaseException as exc:  # SystemExit from a framework included
            if not self._ready.done():
                error = exc if isinstance(exc, Exception) else RuntimeError(repr(exc))
                self._ready.set_exception(error)
            else:
                logging.getLogger("course_ws.servers").exception("server %s crashed", self.name)
        finally:
            router.unregister(threading.get_ident())

    async def _serve(self, start: StartServer) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_requested = asyncio.Event()
        self._main_task = asyncio.current_task()
        running: StartedServer = await start(self.options, self._sock)
        self._ready.set_result(None)
        try:
            await self._stop_requested.wait()
        finally:
            await running.aclose()

    # -- clean-up ---------------------------------------------------------------

    def _abandon(self) -> None:
        """Cancel a start that hangs."""
        self._stopped = True
        if self._main_task is not None:
            self._call_in_loop(self._main_task.cancel)
        self._thread.join(STOP_TIMEOUT)
        self._release()

    def _call_in_loop(self, callback: Callable[[], object]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(callback)

    def _release(self) -> None:
        self._stopped = True
        self._sock.close()


def _is_asgi_app(target: Callable[..., Any]) -> bool:
    try:  # an instance with __call__ (a Starlette app) is read through its bound __call__
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return len(parameters) == 3


def _start_for(target: str | Callable[..., Any]) -> tuple[str, StartServer]:
    """The name and start function of a catalogue name, a websockets handler or an ASGI app."""
    if isinstance(target, str):
        return target, lookup(target).load()
    if not callable(target):
        raise TypeError(
            f"serve_in_background takes a server name, a websockets handler or an ASGI app, "
            f"not {type(target).__name__}"
        )
    name = getattr(target, "__name__", type(target).__name__)
    if _is_asgi_app(target):
        from course_ws.servers._asgi_host import start_asgi_app

        async def start_asgi(options: ServeOptions, sock: socket.socket) -> StartedServer:
            return await start_asgi_app(target, options, sock)

        return name, start_asgi
    if not inspect.iscoroutinefunction(target):
        raise TypeError(
            f"{name} is not a coroutine function: a websockets handler is "
            f"'async def {name}(websocket)'"
        )
    if len(inspect.signature(target).parameters) != 1:
        raise TypeError(
            f"{name} must take exactly one argument, the connection: "
            f"'async def {name}(websocket)'. The two-argument form (websocket, path) is "
            f"the original implementation's, where path was deprecated in websockets 13.0 "
            f"and that implementation itself in 14.0; the new asyncio implementation (the "
            f"default since 14.0) never accepted it. Read the path from websocket.request.path"
        )
    from course_ws.servers._websockets_router import handler_start

    return name, handler_start(target)


def serve_in_background(
    target: str | Callable[..., Any], /, *, startup_timeout: float = STARTUP_TIMEOUT, **options: Any
) -> BackgroundServer:
    """Start a server on a free 127.0.0.1 port in a background thread; return once it listens.

    ``target`` is a catalogue name (``"echo"``; ``course-ws list`` shows them all), a
    ``websockets`` handler (``async def handler(websocket)``, served on every path) or
    an ASGI application (served by uvicorn). ``options`` are those of
    :class:`~course_ws.options.ServeOptions`: ``port``, ``max_size``, ``log_level``, ...

    Use it as a context manager, or call ``.stop()`` when done.
    """
    known = {field.name for field in fields(ServeOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        names = ", ".join(map(repr, unknown))
        raise TypeError(f"unknown option {names}; the options are {', '.join(sorted(known))}")
    if options.get("workers", 1) != 1:
        raise ValueError(
            "a background server is one process in a thread: for several workers use "
            "course_ws.hosting.workers.serve_workers, or course_ws.hosting.deploy.deploy_local"
        )
    name, start = _start_for(target)
    return BackgroundServer(name, start, ServeOptions(**options)).start(startup_timeout)
