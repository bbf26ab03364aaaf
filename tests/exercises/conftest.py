"""Exercise checks: each test loads the learner's file, or the solution with ``--solutions``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType

import pytest

from course_ws.tooling.exercises import find_exercise, load_exercise
from course_ws.tooling.learner_programs import Program, ProgramDidNotStart, running

RunProgram = Callable[..., Awaitable[Program]]


def target(config: pytest.Config) -> str:
    """The folder the checks look at: ``solutions`` with ``--solutions``, else ``exercises``."""
    return "solutions" if config.getoption("--solutions") else "exercises"


@pytest.fixture
def load(request: pytest.FixtureRequest) -> Callable[[str], ModuleType]:
    """``load("shout")`` imports that exercise from the selected folder, afresh."""
    return lambda name: load_exercise(name, target(request.config))


@pytest.fixture
def exercise_path(request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """``exercise_path("echo_server")``: that exercise's file in the selected folder."""
    return lambda name: find_exercise(name).path(target(request.config))


@pytest.fixture
async def run_program(exercise_path: Callable[[str], Path]) -> AsyncIterator[RunProgram]:
    """``await run_program("echo_server", port=0)`` runs that exercise as a program
    (:func:`course_ws.tooling.learner_programs.running`) and returns once it has said
    where it listens; the check fails with the learner-facing message if it does not.
    Every program started is killed and reaped at the end of the test."""
    async with contextlib.AsyncExitStack() as programs:

        async def run(name: str, port: int = 0) -> Program:
            started = running(exercise_path(name), port)
            try:
                return await programs.enter_async_context(started)
            except ProgramDidNotStart as failed:
                message = str(failed)  # fail outside the except: no chained traceback
            pytest.fail(message)

        yield run
