"""Every exercise is honest: its solution passes its check and its untouched starter fails it."""

from __future__ import annotations

import os

import pytest

from course_ws.tooling.checks import CheckReport, check
from course_ws.tooling.exercises import SUFFIXES, all_exercises, course_root, find_exercise

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
    opening = "<!--" if exercise.path().suffix == ".html" else '"""'
    assert starter.startswith(opening), "a starter opens by saying what to build"
    assert "TODO" in starter


def skip_if_it_could_not_run(report: CheckReport) -> None:
    """A check that needs a program this machine lacks (chromium) skips every test: say so,
    and fail instead under CI=true, where every program is installed."""
    results = report.results
    if results and all(result.outcome == "skipped" for result in results):
        reason = f"every check of {report.exercise} skipped: {results[0].reason}"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"CI=true: {reason}")
        pytest.skip(reason)


@pytest.mark.parametrize("name", EXERCISES)
def test_solution_passes(name):
    report = check(name, solutions=True, progress=False)
    skip_if_it_could_not_run(report)
    assert report.passed, str(report)


@pytest.mark.parametrize("name", EXERCISES)
def test_untouched_starter_fails(name):
    report = check(name, progress=False)
    skip_if_it_could_not_run(report)
    assert report.errors == 0, f"the starter must fail its checks, not break them:\n{report}"
    assert report.failed >= 1, f"the untouched starter passes every check:\n{report}"


def test_no_solution_or_check_without_an_exercise():
    root = course_root()
    solved = {
        path.stem
        for path in (root / "solutions").glob("[0-9][0-9]_*/*")
        if path.suffix in SUFFIXES and not path.name.startswith("_")
    }
    checks = {
        path.stem.removeprefix("test_") for path in (root / "tests/exercises").glob("test_*.py")
    }
    assert solved == set(EXERCISES)
    assert checks == set(EXERCISES)
