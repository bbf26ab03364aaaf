"""Shared test options and fixtures.

``--solutions`` points the exercise checks at ``solutions/`` instead of
``exercises/``. The checks in ``tests/exercises`` run only when named on the
command line: a plain ``pytest`` proves them through
``test_exercises_proven.py`` instead, both ways.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from course_ws.hosting.programs import find_program

EXERCISE_CHECKS = Path(__file__).parent / "exercises"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


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


def require_program(name: str) -> Path:
    """The path of ``name`` (redis-server, nginx, chromium); skip loudly if absent, fail in CI."""
    path = find_program(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {name}); this test needs the real one"
        if IN_CI:
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    return path


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
