"""A pytest plugin that records each exercise check as one friendly line.

``course_ws.check()`` runs an exercise's tests in a pytest subprocess with this
plugin and reads the JSON it writes: per test, the first line of its docstring,
the outcome, and the one-line reason for a failure (the assertion message,
which the checks write as "expected ..., got ...").
"""

from __future__ import annotations

import json
import os

import pytest

from course_ws.tooling.checks import REPORT_ENV

_results: list[dict[str, str]] = []
_titles: dict[str, str] = {}


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    first = text.strip().splitlines()[0] if text.strip() else "failed"
    return first.removeprefix("AssertionError: ").removeprefix("Failed: ")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        doc = getattr(getattr(item, "obj", None), "__doc__", None) or item.name
        _titles[item.nodeid] = doc.strip().splitlines()[0]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    title = _titles.get(report.nodeid, report.nodeid)
    outcome: str
    if report.when == "call":
        outcome = report.outcome
    elif report.failed:  # a broken fixture: the exercise could not even be set up
        outcome = "error"
    elif report.skipped and report.when == "setup":
        outcome = "skipped"
    else:
        return
    reason = "" if outcome == "passed" else _reason(report)
    _results.append({"title": title, "outcome": outcome, "reason": reason})


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _results.append(
            {"title": f"loading {report.nodeid}", "outcome": "error", "reason": _reason(report)}
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "w", encoding="utf-8") as file:
            json.dump(_results, file)
