"""Checking an exercise: a short pass/fail list instead of a pytest wall of text.

    >>> check("shout")              # in a notebook
    $ course-ws check shout         # in a shell

The checks are ordinary pytest tests in ``tests/exercises/``; they run in a
subprocess (a fresh interpreter sees the learner's latest edit, and a hanging
exercise cannot hang the notebook) with a small plugin that records each
result in one line. Each line is printed as soon as its check has finished, so
a slow check shows progress; the report names the file it checked by its
absolute path, found by :func:`~course_ws.tooling.exercises.course_root`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from course_ws.tooling.exercises import ROOT_ENV, find_exercise

REPORT_ENV = "COURSE_WS_CHECK_REPORT"
"""Where the pytest plugin (:mod:`.check_plugin`) appends its results, one JSON line each."""
CHECK_TIMEOUT = 30
"""Seconds one check test may take before it counts as failed (a handler that never answers)."""
RUN_TIMEOUT = 300
"""Seconds all the checks of one exercise may take together."""
POLL = 0.05
"""Seconds between looks at the results file while the checks run."""
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

    def lines(self) -> list[str]:
        """How the report shows this check: a mark and the title, then the reason."""
        lines = [f"  {MARKS.get(self.outcome, '!')} {self.title}"]
        if self.reason:
            lines.append(f"      {self.reason}")
        return lines


@dataclass(frozen=True)
class CheckReport:
    """The results of one exercise's checks against the learner's file or the solution."""

    exercise: str
    target: str
    results: tuple[CheckResult, ...]
    path: Path
    """The file checked, as an absolute path."""
    streamed: bool = field(default=False, compare=False)
    """Whether the lines were already printed, one by one, while the checks ran."""

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

    @property
    def verdict(self) -> str:
        """How many checks pass: ``2 of 4 checks pass — not yet``."""
        good = sum(result.passed for result in self.results)
        outcome = "PASSED" if self.passed else "not yet"
        return f"{good} of {len(self.results)} checks pass — {outcome}"

    def __str__(self) -> str:
        lines = [f"{self.exercise} ({self.path}): {self.verdict}"]
        for result in self.results:
            lines += result.lines()
        if not self.results:
            lines.append(NOTHING_RAN)
        return "\n".join(lines)

    def __repr__(self) -> str:
        good = sum(result.passed for result in self.results)
        return f"<CheckReport {self.exercise} {self.target}: {good}/{len(self.results)} passed>"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        # Streamed lines are already on screen: only the verdict is left to say.
        printer.text(f"{self.exercise}: {self.verdict}" if self.streamed else str(self))


NOTHING_RAN = "  ! no check ran: is the check file there?"


def check(
    name: str, *, solutions: bool = False, progress: bool | Callable[[str], None] = True
) -> CheckReport:
    """Run the checks of exercise ``name`` against your file (or, with ``solutions=True``,
    against the model solution) and return the report.

    With ``progress`` (the default), the file checked and each check's line are printed
    as soon as they are known; the report then shows its verdict. ``progress`` may also
    be a function that takes each line instead of :func:`print`.
    """
    exercise = find_exercise(name)
    target = "solutions" if solutions else "exercises"
    path = exercise.path(target).resolve()
    say: Callable[[str], None] | None
    if callable(progress):
        say = progress
    elif progress:
        say = _print
    else:
        say = None
    if say is not None:
        say(f"Checking {name}: {path}")
    with tempfile.TemporaryDirectory(prefix="course-ws-check-") as tmp:
        report_path = Path(tmp) / "report.jsonl"
        report_path.touch()
        env = {
            **os.environ,
            REPORT_ENV: str(report_path),
            ROOT_ENV: str(exercise.root),
            # A check's servers keep their data (the channels server's database) in
            # this run's own folder, never in the learner's.
            "XDG_DATA_HOME": str(Path(tmp) / "data"),
        }
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(exercise.check_file),
            f"--rootdir={exercise.root}",
            "-p",
            "course_ws.tooling.check_plugin",
            "-p",
            "no:cacheprovider",
            # Plugins the checks do not use cost seconds to import, on every check:
            "-p",
            "no:nbval",
            "-p",
            "no:hypothesispytest",
            # The checks are async tests; say so even in a copy without pyproject.toml:
            "-o",
            "asyncio_mode=auto",
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            "-q",
            "--no-header",
            "--tb=no",
            f"--timeout={CHECK_TIMEOUT}",
            *(["--solutions"] if solutions else []),
        ]
        output = Path(tmp) / "output.txt"
        with output.open("w", encoding="utf-8") as sink:
            process = subprocess.Popen(
                command, cwd=exercise.root, env=env, stdout=sink, stderr=subprocess.STDOUT
            )
            results = _follow(process, report_path, say, name)
        if process.returncode not in (0, 1) and not results:  # 1: some check failed
            tail = output.read_text(encoding="utf-8", errors="replace").strip().splitlines()
            raise RuntimeError(f"the checks of {name!r} did not run:\n" + "\n".join(tail[-5:]))
    report = CheckReport(name, target, tuple(results), path, streamed=say is not None)
    if say is not None and not results:
        say(NOTHING_RAN)
    return report


def _print(line: str) -> None:
    print(line, flush=True)


def _follow(
    process: subprocess.Popen[bytes],
    report_path: Path,
    say: Callable[[str], None] | None,
    name: str,
) -> list[CheckResult]:
    """Collect the results the plugin appends while ``process`` runs, saying each line."""
    results: list[CheckResult] = []
    deadline = time.monotonic() + RUN_TIMEOUT
    with report_path.open(encoding="utf-8") as reader:
        while True:
            finished = process.poll() is not None
            _read_results(reader, results, say)
            if finished:
                return results
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise TimeoutError(f"the checks of {name!r} took over {RUN_TIMEOUT} s")
            time.sleep(POLL)


def _read_results(
    reader: TextIO, results: list[CheckResult], say: Callable[[str], None] | None
) -> None:
    while True:
        position = reader.tell()
        line = reader.readline()
        if not line.endswith("\n"):  # nothing new, or a line still being written
            reader.seek(position)
            return
        result = CheckResult(**json.loads(line))
        results.append(result)
        if say is not None:
            for text in result.lines():
                say(text)
