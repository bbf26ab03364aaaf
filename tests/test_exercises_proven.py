"""Every exercise is honest: its solution passes its check and its untouched starter fails it."""

from __future__ import annotations

import pytest

from course_ws.tooling.checks import check
from course_ws.tooling.exercises import all_exercises, course_root, find_exercise

EXERCISES = [exercise.name for exercise in all_exercises()]


def test_there_are_exercises_with_unique_names():
    assert EXERCISES
    assert len(EXERCISES) == len(set(EXERCISES))


@pytest.mark.parametrize("name", EXERCISES)
def test_exercise_has_solution_and_check(name):
    exercise = find_exercise(name)
    assert exercise.path("solutions").is_file()
    assert exercise.check_file.is_file()
    starter = exercise.path("exercises").read_text()
    assert starter.startswith('"""'), "a starter opens with a docstring saying what to build"
    assert "TODO" in starter


@pytest.mark.parametrize("name", EXERCISES)
def test_solution_passes(name):
    report = check(name, solutions=True, progress=False)
    assert report.passed, str(report)


@pytest.mark.parametrize("name", EXERCISES)
def test_untouched_starter_fails(name):
    report = check(name, progress=False)
    assert report.errors == 0, f"the starter must fail its checks, not break them:\n{report}"
    assert report.failed >= 1, f"the untouched starter passes every check:\n{report}"


def test_no_solution_or_check_without_an_exercise():
    root = course_root()
    solved = {path.stem for path in (root / "solutions").glob("[0-9][0-9]_*/*.py")}
    checks = {
        path.stem.removeprefix("test_") for path in (root / "tests/exercises").glob("test_*.py")
    }
    assert solved == set(EXERCISES)
    assert checks == set(EXERCISES)
