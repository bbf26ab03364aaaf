"""A pytest plugin that records each exercise check as one friendly line.

``course_ws.check()`` runs an exercise's tests in a pytest subprocess with this
plugin and reads what it writes, one JSON line per check as soon as that check
has finished (so that a slow check shows progress): the first line of the test's
docstring, the outcome, and a one-line reason for a failure — the assertion
message, which the checks write as "expected ..., got ...".

When the learner's own code raised — in the test itself, or in a handler that a
background server ran, where the exception only reaches the server's log — the
reason names the exception and the line of the learner's file it came from::

    ConnectionClosedError raised at bouncer.py:6 in "async for message in websocket"

instead of a traceback, a long repr, or the bare "connection handler failed".
"""

from __future__ import annotations

import json
import logging
import os
import traceback
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from course_ws.hosting.logs import SERVER_LOGGERS
from course_ws.tooling.checks import REPORT_ENV
from course_ws.tooling.exercises import ROOT_ENV, TARGETS

MAX_REASON = 300
"""Characters of a reason shown at most: one line, not a wall of text."""

_titles: dict[str, str] = {}
_causes: dict[str, str] = {}


class _Recorder(logging.Handler):
    """Keep the records that carry an exception, logged while a check runs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.records.append(record)


_recorder = _Recorder()


def _learner_folders() -> tuple[Path, ...]:
    root = os.environ.get(ROOT_ENV)
    if not root:
        return ()
    return tuple((Path(root) / target).resolve() for target in TARGETS)


def _in_learner_file(filename: str, folders: tuple[Path, ...]) -> bool:
    try:
        path = Path(filename).resolve()
    except (OSError, ValueError):
        return False
    return any(folder in path.parents for folder in folders)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then what it was raised from or while handling, innermost last."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def where_raised(exc: BaseException, folders: tuple[Path, ...]) -> str | None:
    """``at bouncer.py:6 in "async for ..."``: the deepest line of the learner's file
    in ``exc``'s traceback, or ``None`` when the learner's code is not in it."""
    if isinstance(exc, SyntaxError) and exc.filename and _in_learner_file(exc.filename, folders):
        source = _code_only(exc.text or "")
        place = f"at {Path(exc.filename).name}:{exc.lineno}"
        return f'{place} in "{source}"' if source else place
    frames = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if _in_learner_file(frame.filename, folders)
    ]
    if not frames:
        return None
    frame = frames[-1]
    place = f"at {Path(frame.filename).name}:{frame.lineno}"
    source = _code_only(frame.line or "")
    return f'{place} in "{source}"' if source else place


def _code_only(line: str) -> str:
    """A source line without its trailing comment and colon: ``async for m in ws``."""
    code = line.split("  #", 1)[0].strip()
    return code.removesuffix(":").rstrip()


def learner_error(exc: BaseException, folders: tuple[Path, ...]) -> tuple[BaseException, str]:
    """The exception in ``exc``'s chain that the learner's code raised, and where;
    raises LookupError when there is none."""
    for link in _chain(exc):
        place = where_raised(link, folders)
        if place is not None:
            return link, place
    raise LookupError("the learner's file is not in this traceback")


def one_line(text: str) -> str:
    """The first non-empty line of ``text``, at most ``MAX_REASON`` characters."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    return first if len(first) <= MAX_REASON else first[: MAX_REASON - 1] + "…"


def explain(reason: str, failure: BaseException | None, logged: list[logging.LogRecord]) -> str:
    """The reason a check failed, naming the learner's exception and line if it raised one.

    * the check failed *because* the learner's code raised: ``Type raised at file:line in
      "source": message``;
    * a check's message that quotes what the server logged (``'connection handler
      failed'``): that quote becomes ``Type raised at file:line in "source"``;
    * otherwise an exception the learner's handler logged follows the check's message,
      unless it is only a disconnect (``ConnectionClosed``).
    """
    folders = _learner_folders()
    if failure is not None:
        try:
            exc, place = learner_error(failure, folders)
        except LookupError:
            pass
        else:
            name = type(exc).__name__
            if exc is failure:  # the learner's exception is the failure itself
                message = one_line(str(exc.msg if isinstance(exc, SyntaxError) else exc))
                return one_line(f"{name} raised {place}" + (f": {message}" if message else ""))
            if name in reason:  # "collect raised ConnectionClosedError (...) instead of ..."
                return one_line(f"{reason}, {place}")
            return one_line(f"{reason}: {name} raised {place}")
    for record in logged:
        logged_exc = record.exc_info[1] if record.exc_info else None
        if logged_exc is None:
            continue
        try:
            exc, place = learner_error(logged_exc, folders)
        except LookupError:
            continue
        cause = f"{type(exc).__name__} raised {place}"
        quoted = repr(record.getMessage())
        if quoted in reason:
            return one_line(reason.replace(quoted, cause))
        if not isinstance(exc, ConnectionClosed):
            # A disconnect that escaped the handler is a symptom (often of the test's
            # clients leaving after the failure), not why the check failed: only a check
            # about the log (above) names it.
            return one_line(f"{reason} ({cause})")
    return reason


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):  # (path, line, "Skipped: why")
        return one_line(str(report.longrepr[2]).removeprefix("Skipped: ")) or "skipped"
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    first = one_line(text) or "failed"
    return first.removeprefix("AssertionError: ").removeprefix("Failed: ")


def _write(result: dict[str, str]) -> None:
    path = os.environ.get(REPORT_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(json.dumps(result) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    for name in (*SERVER_LOGGERS, "asyncio"):
        logging.getLogger(name).addHandler(_recorder)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        doc = getattr(getattr(item, "obj", None), "__doc__", None) or item.name
        _titles[item.nodeid] = doc.strip().splitlines()[0]


def pytest_runtest_logstart(nodeid: str) -> None:
    _recorder.records.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and item.nodeid not in _causes:
        failure = call.excinfo.value if call.excinfo is not None else None
        _causes[item.nodeid] = explain(_reason(report), failure, list(_recorder.records))
    return report


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
    reason = "" if outcome == "passed" else _causes.get(report.nodeid) or _reason(report)
    _write({"title": title, "outcome": outcome, "reason": reason})


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.failed:
        _write({"title": f"loading {report.nodeid}", "outcome": "error", "reason": _reason(report)})
