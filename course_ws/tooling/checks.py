"""Checking an exercise: a short pass/fail list instead of a pytest wall of text.

    >>> check("shout")              # in a notebook
    $ course-ws check shout         # in a shell

The checks are ordinary pytest tests in ``tests/exercises/``; they run in a
subprocess (a fresh interpreter sees the learner's latest edit, and a hanging
exercise cannot hang the notebook) with a small plugin that records each
result in one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course_ws.tooling.exercises import ROOT_ENV, find_exercise

REPORT_ENV = "COURSE_WS_CHECK_REPORT"
"""Where the pytest plugin (:mod:`.check_plugin`) writes its one-line results."""
CHECK_TIMEOUT = 30
"""Seconds one check test may take before it counts as failed (a handler that never answers)."""
RUN_TIMEOUT = 300
"""Seconds all the checks of one exercise may take together."""
MARKS = {"passed": "✔", "failed": "✘", "skipped": "–"}


@dataclass(frozen=True)
class CheckResult:
    """One check: what it tests, how it went, and why it failed."""

    title: str
    outcome: str
    reason: str

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"


@dataclass(frozen=True)
class CheckReport:
    """The results of one exercise's checks against the learner's file or the solution."""

    exercise: str
    target: str
    results: tuple[CheckResult, ...]
    path: Path

    @property
    def passed(self) -> bool:
        """Every check ran and passed (and there was at least one)."""
        return bool(self.results) and all(result.passed for result in self.results)

    @property
    def failed(self) -> int:
        return sum(result.outcome == "failed" for result in self.results)

    @property
    def errors(self) -> int:
        return sum(result.outcome not in MARKS for result in self.results)

    def __str__(self) -> str:
        good = sum(result.passed for result in self.results)
        verdict = "PASSED" if self.passed else "not yet"
        lines = [
            f"{self.exercise} ({self.path}): {good} of {len(self.results)} checks pass — {verdict}"
        ]
        for result in self.results:
            lines.append(f"  {MARKS.get(result.outcome, '!')} {result.title}")
            if result.reason:
                lines.append(f"      {result.reason}")
        if not self.results:
            lines.append("  ! no check ran: is the check file there?")
        return "\n".join(lines)

    def __repr__(self) -> str:
        good = sum(result.passed for result in self.results)
        return f"<CheckReport {self.exercise} {self.target}: {good}/{len(self.results)} passed>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


def check(name: str, *, solutions: bool = False) -> CheckReport:
    """Run the checks of exercise ``name`` against your file (or, with ``solutions=True``,
    against the model solution) and return the report; a notebook shows it as a list."""
    exercise = find_exercise(name)
    target = "solutions" if solutions else "exercises"
    with tempfile.TemporaryDirectory(prefix="course-ws-check-") as tmp:
        report_path = Path(tmp) / "report.json"
        env = {**os.environ, REPORT_ENV: str(report_path), ROOT_ENV: str(exercise.root)}
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(exercise.check_file),
            "-p",
            "course_ws.tooling.check_plugin",
            "-p",
            "no:cacheprovider",
            # Plugins the checks do not use cost seconds to import, on every check:
            "-p",
            "no:nbval",
            "-p",
            "no:hypothesispytest",
            "-q",
            "--no-header",
            "--tb=no",
            f"--timeout={CHECK_TIMEOUT}",
            *(["--solutions"] if solutions else []),
        ]
        try:
            done = subprocess.run(
                command,
                cwd=exercise.root,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=RUN_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"the checks of {name!r} took over {RUN_TIMEOUT} s") from None
        if not report_path.exists():
            tail = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise RuntimeError(f"the checks of {name!r} did not run:\n" + "\n".join(tail))
        raw = json.loads(report_path.read_text(encoding="utf-8"))
    results = tuple(CheckResult(**item) for item in raw)
    return CheckReport(name, target, results, exercise.path(target).relative_to(exercise.root))
