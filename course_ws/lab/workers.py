"""Two workers, small enough for a notebook: processes that share nothing, apps that share a bus.

``uvicorn --workers 2`` starts two processes behind one port; the kernel hands
each new connection to one of them, whichever accepts first, so a notebook
cannot say in advance which member lands where. Here each worker gets its own
port instead, and the experiment decides: the first member on worker 1, the
second on worker 2, and so on, as a load balancer in front would spread them
(chapter 06 puts nginx there).

- :func:`start_uvicorn_workers` runs an app as separate ``uvicorn`` processes,
  one per port: nothing in memory is shared, exactly as with ``--workers``.
- :func:`serve_course_workers` runs several course chat apps (``asgi``,
  ``starlette`` or ``fastapi``) in *one* background thread and event loop, one
  port each, with their own in-memory brokers or one shared
  :class:`~course_ws.chat.brokers.Broker`. The shared in-memory broker is an
  in-process stand-in for Redis: it shows that the broker is what carries a
  message from one app to the members of another, and it works only because
  both apps live in one process. Across processes, the bus must be a service
  (chapter 06).
- :func:`reach` connects members round robin to the workers, has one of them
  speak, and counts who hears it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from course_ws.chat.brokers import Broker, open_broker_for
from course_ws.hosting.background import BackgroundServer
from course_ws.hosting.listening import bind_listener, socket_address, url_host
from course_ws.lab.rooms import Dialect
from course_ws.options import ServeOptions
from course_ws.servers import StartedServer
from course_ws.servers._asgi_chat import start_chat_app

CourseApp = Literal["asgi", "starlette", "fastapi"]
STARTUP_TIMEOUT = 15.0
RUNNING = re.compile(r"Uvicorn running on http://([\d.]+):(\d+)")


class UvicornWorkers:
    """``uvicorn`` processes serving one app, each on its own loopback port.

    ``urls`` are their ``ws://host:port`` base URLs, ``http_urls`` the same for
    HTTP; each process logs to a file of its own (``logs``), never to the notebook.
    """

    def __init__(self, processes: list[subprocess.Popen[bytes]], ports: list[int], logs: Path):
        self.processes = processes
        self.ports = ports
        self.log_dir = logs

    @property
    def urls(self) -> list[str]:
        """The workers' ``ws://`` base URLs, in start order."""
        return [f"ws://127.0.0.1:{port}" for port in self.ports]

    @property
    def http_urls(self) -> list[str]:
        """The workers' ``http://`` base URLs, in start order."""
        return [f"http://127.0.0.1:{port}" for port in self.ports]

    @property
    def pids(self) -> list[int]:
        """The workers' process ids: different processes, different memories."""
        return [process.pid for process in self.processes]

    def logs(self, worker: int) -> str:
        """What worker ``worker`` (counting from 0) printed so far."""
        return (self.log_dir / f"worker-{worker}.log").read_text(errors="replace")

    def stop(self) -> None:
        """Stop every worker (SIGTERM, then SIGKILL after 5 s). Idempotent."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def __enter__(self) -> UvicornWorkers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_uvicorn_workers(
    app: str, count: int = 2, *, timeout: float = STARTUP_TIMEOUT
) -> UvicornWorkers:
    """Start ``count`` processes of ``uvicorn APP --port 0``; return once each listens.

    ``app`` is uvicorn's ``module:attribute``. Each process picks a free port and
    says which on its log (``Uvicorn running on ...``), read here from a file so
    that a chatty worker can never block on a full pipe.
    """
    logs = Path(tempfile.mkdtemp(prefix="course-ws-workers-"))
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", "0"]
    command += ["--log-level", "info", "--no-access-log"]
    processes = []
    for worker in range(count):
        with (logs / f"worker-{worker}.log").open("wb") as log:
            processes.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT))
    workers = UvicornWorkers(processes, [], logs)
    deadline = time.monotonic() + timeout
    try:
        for worker, process in enumerate(processes):
            while not (found := RUNNING.search(workers.logs(worker))):
                if process.poll() is not None:
                    raise RuntimeError(f"worker {worker} ended: {workers.logs(worker)[-500:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker {worker} did not listen within {timeout:g} s")
                time.sleep(0.05)
            workers.ports.append(int(found.group(2)))
    except BaseException:
        workers.stop()
        raise
    return workers


# -- course apps in one process --------------------------------------------------------------


@dataclass
class _Started:
    """Several started servers that stop together."""

    servers: list[StartedServer] = field(default_factory=list)

    async def aclose(self) -> None:
        await asyncio.gather(*(server.aclose() for server in self.servers))


class CourseWorkers:
    """Course chat apps on one background event loop, one port each (see the module docstring)."""

    def __init__(self, background: BackgroundServer, sockets: list[socket.socket]) -> None:
        self.background = background
        self.sockets = sockets
        self.ports = [background.port] + [socket_address(sock)[1] for sock in sockets]
        """The apps' ports, the background server's first."""

    @property
    def urls(self) -> list[str]:
        """The apps' ``ws://`` base URLs."""
        host = url_host(self.background.host)
        return [f"ws://{host}:{port}" for port in self.ports]

    @property
    def http_urls(self) -> list[str]:
        """The apps' ``http://`` base URLs."""
        host = url_host(self.background.host)
        return [f"http://{host}:{port}" for port in self.ports]

    @property
    def logs(self) -> list[str]:
        """What the apps logged, kept out of the notebook."""
        return self.background.logs

    def stop(self) -> None:
        """Close every member with 1001 and stop every app. Idempotent."""
        self.background.stop()
        for sock in self.sockets:
            sock.close()

    def __enter__(self) -> CourseWorkers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve_course_workers(
    name: CourseApp = "fastapi", count: int = 2, *, shared_broker: bool, **options: object
) -> CourseWorkers:
    """``count`` course chat apps in one process, one port each.

    ``shared_broker=False``: each app opens its own in-memory broker, as each
    worker process would. ``shared_broker=True``: one in-memory broker for all,
    the in-process stand-in for Redis. ``options`` are
    :class:`~course_ws.options.ServeOptions` fields.
    """
    serve_options = ServeOptions(**options)  # type: ignore[arg-type]
    create_app = importlib.import_module(f"course_ws.servers.{name}").create_app
    extra = [bind_listener(serve_options.host, 0) for _ in range(count - 1)]

    async def start(options: ServeOptions, sock: socket.socket) -> StartedServer:
        broker: Broker | None = open_broker_for(options) if shared_broker else None
        started = _Started()
        try:
            for listener in [sock, *extra]:
                app = create_app(options, broker)
                started.servers.append(await start_chat_app(app, options, listener))
        except BaseException:
            await started.aclose()
            raise
        return started

    label = f"{count} {name} apps, {'one shared broker' if shared_broker else 'a broker each'}"
    try:
        background = BackgroundServer(label, start, serve_options).start()
    except BaseException:
        for sock in extra:
            sock.close()
        raise
    return CourseWorkers(background, extra)


# -- who hears a message ---------------------------------------------------------------------


@dataclass
class Reach:
    """Who heard one message: the speaker's worker, and each listener by worker."""

    speaker_worker: int
    heard: list[tuple[int, bool]]
    """``(worker, heard it)`` for every member but the speaker."""

    @property
    def listeners(self) -> int:
        """Members who should have heard it."""
        return len(self.heard)

    @property
    def reached(self) -> int:
        """Members who did hear it."""
        return sum(heard for _, heard in self.heard)

    @property
    def lost(self) -> int:
        """Members who did not."""
        return self.listeners - self.reached

    def __str__(self) -> str:
        workers = sorted({worker for worker, _ in self.heard} | {self.speaker_worker})
        parts = []
        for worker in workers:
            mine = [heard for where, heard in self.heard if where == worker]
            parts.append(f"worker {worker + 1}: {sum(mine)} of {len(mine)}")
        return f"reached {self.reached} of {self.listeners} ({', '.join(parts)}), lost {self.lost}"


async def _heard(websocket: ClientConnection, dialect: Dialect, text: str, timeout: float) -> bool:
    """Whether ``text`` arrives on ``websocket`` within ``timeout`` s (other frames skipped)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                if dialect.said(await websocket.recv()) == text:
                    return True
    except (TimeoutError, ConnectionClosed):
        return False


async def reach(
    urls: Sequence[str],
    dialect: Dialect,
    *,
    members: int = 6,
    text: str = "hello, everyone",
    speak: Callable[[str], Awaitable[object]] | None = None,
    speaker_worker: int = 0,
    timeout: float = 0.5,
) -> Reach:
    """Connect ``members`` round robin to ``urls``; member 0 says ``text``; who hears it?

    With ``speak``, ``await speak(text)`` says it instead (a ``POST`` to worker
    ``speaker_worker``, say), and member 0 is one more listener.
    """
    workers = [index % len(urls) for index in range(members)]
    async with contextlib.AsyncExitStack() as stack:
        sockets = []
        for index, worker in enumerate(workers):
            user = f"member{index}"
            websocket = await stack.enter_async_context(
                connect(dialect.url(urls[worker], user), ping_interval=None)
            )
            await dialect.joined(websocket, user)
            sockets.append(websocket)
        listening = range(members) if speak is not None else range(1, members)
        tasks = [
            asyncio.create_task(_heard(sockets[index], dialect, text, timeout))
            for index in listening
        ]
        if speak is None:
            await sockets[0].send(dialect.say(text))
        else:
            await speak(text)
        heard = await asyncio.gather(*tasks)
    speaker = workers[0] if speak is None else speaker_worker
    return Reach(speaker, [(workers[i], h) for i, h in zip(listening, heard, strict=True)])
