"""Shared test options and fixtures.

``--solutions`` points the exercise checks at ``solutions/`` instead of
``exercises/``. The checks in ``tests/exercises`` run only when named on the
command line: a plain ``pytest`` proves them through
``test_exercises_proven.py`` instead, both ways.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import isolated_data_home  # noqa: F401  (before anything imports course_ws)
import pytest
from required import require_program

ROOT = Path(__file__).parents[1]
EXERCISE_CHECKS = Path(__file__).parent / "exercises"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--solutions",
        action="store_true",
        help="check the model solutions instead of the exercise starters",
    )
    parser.addoption(
        "--conformance-server",
        action="append",
        metavar="NAME",
        help="run the chat conformance suite against this catalogue server "
        "(repeatable; default: every server with a /chat/{room} endpoint)",
    )


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    if collection_path == EXERCISE_CHECKS or EXERCISE_CHECKS in collection_path.parents:
        named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
        if not any(path == EXERCISE_CHECKS or EXERCISE_CHECKS in path.parents for path in named):
            return True
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Count what the run proved, by kind: package tests, exercises both ways, notebook cells."""
    kinds = {
        "package tests": lambda nodeid: (
            nodeid.startswith("tests/")
            and "test_exercises_proven.py::test_solution_passes" not in nodeid
            and "test_exercises_proven.py::test_untouched_starter_fails" not in nodeid
        ),
        "exercise solutions passing their checks": lambda nodeid: (
            "::test_solution_passes[" in nodeid
        ),
        "untouched starters failing their checks": lambda nodeid: (
            "::test_untouched_starter_fails[" in nodeid
        ),
        "notebook cells matching their outputs (nbval)": lambda nodeid: ".ipynb::" in nodeid,
    }
    stats = terminalreporter.stats
    reports = [r for key in ("passed", "failed", "error") for r in stats.get(key, [])]
    reports = [r for r in reports if getattr(r, "when", "call") == "call" or r.outcome != "passed"]
    terminalreporter.section("course-ws summary")
    for kind, belongs in kinds.items():
        mine = [r for r in reports if belongs(r.nodeid)]
        if mine:
            passed = sum(r.outcome == "passed" for r in mine)
            terminalreporter.write_line(f"{kind}: {passed} of {len(mine)}")


CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright (no browser download).

    Module scope, not session: Playwright's sync API keeps an event loop running on
    the main thread while it is open, and pytest-asyncio cannot run async tests then.
    """
    executable = require_program("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


# -- `make lab`, started headless ------------------------------------------------------


@dataclass(frozen=True)
class LabServer:
    """``make lab`` serving: its base URL (``http://127.0.0.1:PORT``), token and output."""

    url: str
    token: str
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """End make, JupyterLab and its kernels: SIGTERM, then SIGKILL after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


@contextlib.contextmanager
def run_make_lab(
    home: Path, *, startup: float, lab_args: str = "", make_args: Sequence[str] = ()
) -> Iterator[LabServer]:
    """``make lab`` headless on a free loopback port with a token, until it serves.

    Jupyter's folders (config, data, runtime, IPython) are in ``home``, its output in
    ``home/jupyterlab.log``; ``lab_args`` are added to JupyterLab's command line and
    ``make_args`` to make's. Fails if it does not serve within ``startup`` seconds;
    make, JupyterLab and its kernels are always stopped afterwards.
    """
    port, token = free_port(), secrets.token_hex(16)
    all_lab_args = (
        f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token} {lab_args}"
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(home / "config"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
        "IPYTHONDIR": str(home / "ipython"),
    }
    lab = LabServer(f"http://127.0.0.1:{port}", token, home / "jupyterlab.log")
    with lab.log.open("wb") as output:
        process = subprocess.Popen(
            ["make", "--no-print-directory", *make_args, "lab", f"LAB_ARGS={all_lab_args}"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    status = urllib.request.Request(
        f"{lab.url}/api/status", headers={"Authorization": f"token {token}"}
    )
    try:
        deadline = time.monotonic() + startup
        while True:
            try:
                with urllib.request.urlopen(status, timeout=10):
                    break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"make lab did not serve {lab.url}:\n{lab.log_tail()}")
                time.sleep(0.5)
        yield lab
    finally:
        stop_group(process)


@pytest.fixture(scope="session")
def make_lab() -> Callable[..., contextlib.AbstractContextManager[LabServer]]:
    """``with make_lab(home, startup=60) as lab:`` (:func:`run_make_lab`); any scope can use it."""
    return run_make_lab
