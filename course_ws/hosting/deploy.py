"""A whole deployment on one machine: Redis, N workers and nginx in front, on free loopback ports.

    >>> with deploy_local("chat", workers=2) as deployment:
    ...     print(deployment.url)              # the one address clients use: nginx
    ws://127.0.0.1:PORT
    ...     deployment.restart_workers()       # a rolling restart, as SIGHUP does

It is what ``course-ws deploy local NAME --workers N`` runs, and what notebook
06 and the tests use: a real ``redis-server`` (append-only, see
:mod:`.redis_server`), ``N`` workers of the catalogue server (each on its own
port, ``--broker redis://...``, ``--trusted-proxy 127.0.0.1`` so that limits
apply to the address nginx forwards), and a real ``nginx`` balancing them with
``least_conn`` (``deploy/nginx.conf``, rendered by :mod:`.nginx`). Every file
(configurations, logs, Redis's append-only file) is in one folder.

Stopping goes in the order that lets every client hear 1001: nginx stops
accepting, the workers close their clients (the close frames go through
nginx's open tunnels), nginx exits once they are closed, and Redis last,
after the workers have stopped using it.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course_ws.hosting.listening import url_host
from course_ws.hosting.nginx import NginxServer, render_nginx_conf
from course_ws.hosting.redis_server import RedisServer, free_loopback_port
from course_ws.hosting.workers import WorkerPool
from course_ws.options import ServeOptions

PROXY = "127.0.0.1"
"""Where nginx connects to the workers from: the workers trust its X-Forwarded-For."""


@dataclass
class LocalDeployment:
    """The running parts of :func:`deploy_local`, and where to find them."""

    name: str
    directory: Path
    redis: RedisServer
    workers: WorkerPool
    nginx: NginxServer

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT``, nginx: what clients connect to."""
        return self.nginx.url

    @property
    def http_url(self) -> str:
        return self.nginx.http_url

    @property
    def worker_urls(self) -> list[str]:
        """Each worker's own ``http://`` address, behind nginx (for its ``/metrics``)."""
        return [f"http://{url_host(host)}:{port}" for host, port in self.workers.addresses]

    def restart_workers(self) -> bool:
        """Restart the workers one at a time, each listening before the old one stops;
        False if a new one could not start (the old ones then go on serving)."""
        return self.workers.restart()

    def describe(self) -> str:
        """What runs where, in a few lines."""
        workers = ", ".join(
            f"{url_host(host)}:{port} (pid {pid})"
            for (host, port), pid in zip(self.workers.addresses, self.workers.pids, strict=True)
        )
        count = len(self.workers.workers)
        return "\n".join(
            [
                f"nginx {self.url} -> {count} workers of {self.name}: {workers}",
                f"redis-server {self.redis.url} (append-only)",
                f"files (configurations, logs, append-only file): {self.directory}",
            ]
        )

    def stop(self) -> None:
        """nginx stops accepting, workers close clients with 1001, nginx exits, then Redis."""
        self.nginx.stop_accepting()
        self.workers.stop()
        self.nginx.stop()
        self.redis.stop()


@contextlib.contextmanager
def deploy_local(
    name: str = "chat",
    *,
    workers: int = 2,
    port: int = 0,
    directory: Path | str | None = None,
    upgrade_headers: bool = True,
    **options: Any,
) -> Iterator[LocalDeployment]:
    """Start Redis, ``workers`` processes of server ``name`` and nginx on ``port`` (0: free).

    ``options`` are further :class:`~course_ws.options.ServeOptions` fields for
    the workers (``log_level``, ``history_size``, ...). ``upgrade_headers=False``
    starts nginx without the ``Upgrade``/``Connection`` lines: a misconfigured
    proxy that fails every WebSocket handshake. Files go to ``directory`` (a
    temporary folder, removed afterwards, if ``None``), the ``channels``
    server's database too unless ``database`` says otherwise. Everything is stopped
    when the block ends, even after an error.
    """
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = stack.enter_context(tempfile.TemporaryDirectory(prefix="course-ws-deploy-"))
        folder = Path(directory)
        folder.mkdir(parents=True, exist_ok=True)
        redis = stack.enter_context(RedisServer(folder / "redis"))
        worker_options = ServeOptions(
            **{
                "trusted_proxy": (PROXY,),
                "database": str(folder / "chat.sqlite3"),  # channels: in the deployment too
                **options,
                "host": PROXY,
                "port": 0,
                "workers": workers,
                "broker": redis.url,
            }
        )
        pool = stack.enter_context(
            WorkerPool(name, worker_options, separate_ports=True, log=folder / "workers.log")
        )
        pool.start()
        listen = port or free_loopback_port()
        config = render_nginx_conf(
            pool.addresses,
            ("127.0.0.1", listen),
            ping_interval=worker_options.ping_interval,
            upgrade_headers=upgrade_headers,
        )
        nginx = stack.enter_context(NginxServer(folder / "nginx", config, listen))
        deployment = LocalDeployment(name, folder, redis, pool, nginx)
        stack.callback(deployment.stop)  # first of all: the order that gives clients 1001
        yield deployment
