"""A real ``nginx`` in front of the workers, run as the current user on a free loopback port.

:func:`render_nginx_conf` turns ``deploy/nginx.conf`` (a complete, commented
example) into the configuration for given workers: it replaces the upstream's
``server`` lines, the ``listen`` line and the proxy timeouts, and checks that
each was found exactly where the example has it, so the two cannot drift
apart. ``upgrade_headers=False`` renders the classic mistake, a proxy that does
not pass ``Upgrade`` and ``Connection`` on, to show what a client gets then.

:class:`NginxServer` runs it in the foreground (``daemon off;``) with every
file it writes (pid, error log, temporary files) in its own folder, given as
nginx's prefix (``-p``), so no root and no ``/var`` are needed. Stopping is
nginx's graceful shutdown (SIGQUIT): it stops accepting at once and lets open
connections, WebSocket tunnels included, finish; the workers behind it then
close their clients with 1001, which still travels through it.
"""

from __future__ import annotations

import itertools
import math
import re
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from course_ws.hosting.listening import url_host
from course_ws.hosting.programs import ends_with_this_process, find_program

TEMPLATE = Path(__file__).parents[2] / "deploy" / "nginx.conf"
"""The example configuration that is rendered (in the source tree, beside ``course_ws``)."""
START_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0
"""Seconds nginx's graceful shutdown may take (the workers' 1001 included) before SIGTERM."""
MIN_READ_TIMEOUT = 75
"""Seconds of ``proxy_read_timeout`` at least: above nginx's default 60 s, on purpose."""

_UPSTREAM_SERVER = re.compile(r"(?m)^([ \t]*)server [\w.:\[\]]+:\d+( [^;\n]*)?;\n")
_LISTEN = re.compile(r"(?m)^(\s*listen )\S+;")
_TIMEOUTS = re.compile(r"(?m)^(\s*proxy_(?:read|send)_timeout )\d+s;")
_UPGRADE_HEADERS = re.compile(
    r"(?m)^\s*proxy_set_header (?:Upgrade \$http_upgrade|Connection \$connection_upgrade);\n"
)


class NginxNotInstalled(FileNotFoundError):
    """``nginx`` is not on this machine; the message says how to install it."""


def read_timeout_for(ping_interval: float | None) -> int:
    """nginx's ``proxy_read_timeout`` for workers pinging every ``ping_interval`` seconds.

    nginx closes a proxied WebSocket when nothing came from the worker for that
    long; a worker's ping is something, so three intervals leave room for two to
    be late. A worker that never pings (``None``) would be cut while quiet: refused.
    """
    if ping_interval is None:
        raise ValueError(
            "behind nginx the workers must ping: with ping_interval off, a quiet WebSocket "
            "is cut after proxy_read_timeout"
        )
    return max(MIN_READ_TIMEOUT, math.ceil(3 * ping_interval))


def _replace(pattern: re.Pattern[str], replacement: str, text: str, count: int) -> str:
    rendered, found = pattern.subn(replacement, text)
    if found != count:
        raise ValueError(
            f"{TEMPLATE.name}: expected {count} match(es) of {pattern.pattern!r}, found {found}"
        )
    return rendered


def render_nginx_conf(
    upstreams: Sequence[tuple[str, int]],
    listen: tuple[str, int],
    *,
    ping_interval: float | None = 20.0,
    upgrade_headers: bool = True,
    template: str | None = None,
) -> str:
    """``deploy/nginx.conf`` for workers at ``upstreams``, nginx listening at ``listen``.

    ``upgrade_headers=False`` leaves out ``proxy_set_header Upgrade`` and
    ``Connection``: the misconfigured proxy that every WebSocket handshake fails through.
    """
    if not upstreams:
        raise ValueError("nginx needs at least one worker to proxy to")
    text = TEMPLATE.read_text(encoding="utf-8") if template is None else template
    lines = list(_UPSTREAM_SERVER.finditer(text))
    if not lines or any(a.end() != b.start() for a, b in itertools.pairwise(lines)):
        raise ValueError(f"{TEMPLATE.name}: expected the upstream's server lines, one block")
    indent, params = lines[0].group(1), lines[0].group(2) or ""
    servers = "".join(f"{indent}server {url_host(h)}:{p}{params};\n" for h, p in upstreams)
    text = text[: lines[0].start()] + servers + text[lines[-1].end() :]
    text = _replace(_LISTEN, rf"\g<1>{url_host(listen[0])}:{listen[1]};", text, 1)
    timeout = read_timeout_for(ping_interval)
    text = _replace(_TIMEOUTS, rf"\g<1>{timeout}s;", text, 2)
    if not upgrade_headers:
        text = _replace(_UPGRADE_HEADERS, "", text, 2)
    return text


class NginxServer:
    """One ``nginx`` process serving ``config`` (a rendered configuration) from ``directory``."""

    def __init__(self, directory: Path, config: str, port: int) -> None:
        executable = find_program("nginx")
        if executable is None:
            raise NginxNotInstalled(
                "nginx is not installed: apt-get install nginx "
                "(or conda install -c conda-forge nginx)"
            )
        self.executable = executable
        self.directory = Path(directory)
        self.config = config
        self.port = port
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``ws://127.0.0.1:PORT``: the one address clients use."""
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "nginx.conf"

    @property
    def error_log(self) -> Path:
        return self.directory / "logs" / "error.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def command(self) -> list[str]:
        """The ``nginx`` command line: prefix, error log and configuration in ``directory``."""
        return [
            str(self.executable),
            "-p", f"{self.directory}/",
            "-e", "logs/error.log",  # before the configuration is read, too
            "-c", str(self.config_path),
        ]  # fmt: skip

    def check(self) -> None:
        """``nginx -t``: RuntimeError with nginx's own words if the configuration is wrong."""
        self._prepare()
        done = subprocess.run(
            [*self.command(), "-t", "-q"], capture_output=True, text=True, timeout=20, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"nginx refused its configuration: {done.stderr.strip()}")

    def start(self, timeout: float = START_TIMEOUT) -> NginxServer:
        """Start nginx; return once it accepts connections (RuntimeError with its log if not)."""
        self.check()
        self.process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=ends_with_this_process(),  # no orphan when this process is killed
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not _accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop(0)
                raise RuntimeError(
                    f"nginx did not start on 127.0.0.1:{self.port}: {self.log_tail()}"
                )
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Graceful shutdown (SIGQUIT), then fast (SIGTERM), then SIGKILL. Idempotent."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for signum, wait in (
            (signal.SIGQUIT, timeout),
            (signal.SIGTERM, 5.0),
            (signal.SIGKILL, 5.0),
        ):
            process.send_signal(signum)
            try:
                process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def stop_accepting(self) -> None:
        """SIGQUIT: stop accepting now; open connections go on until they close."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGQUIT)

    def log_tail(self, size: int = 2000) -> str:
        try:
            return self.error_log.read_text(errors="replace")[-size:]
        except OSError:
            return ""

    def _prepare(self) -> None:
        for folder in ("logs", "temp"):
            (self.directory / folder).mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config, encoding="utf-8")

    def __enter__(self) -> NginxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<NginxServer {self.url} {'running' if self.running else 'stopped'}>"


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
