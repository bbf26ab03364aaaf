"""Exercise checks: each test loads the learner's file, or the solution with ``--solutions``."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import pytest

from course_ws.tooling.exercises import load_exercise


@pytest.fixture
def load(request: pytest.FixtureRequest) -> Callable[[str], ModuleType]:
    """``load("shout")`` imports that exercise from the selected folder, afresh."""
    target = "solutions" if request.config.getoption("--solutions") else "exercises"
    return lambda name: load_exercise(name, target)
