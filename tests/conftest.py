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

from course_ws.programs import find_program

EXERCISE_CHECKS = Path(__file__).parent / "exercises"
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--solutions",
        action="store_true",
        help="check the model solutions instead of the exercise starters",
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
