"""``course-ws check``: it checks the learner's own files, and its messages help.

* A copy of the course is checked as the copy: the file it reads is the copy's,
  named by its absolute path (``$COURSE_WS_ROOT``, then the current folder and
  its parents, then the package's own checkout).
* A handler that raises is reported in one line: the exception, the learner's
  file and line, and that line's code.
* Each check's line is printed as soon as it is known; nearly right exercises are
  not slow to check.
* ``presence`` really requires duplicate names to be kept.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError

from course_ws.tooling import check_plugin
from course_ws.tooling.checks import check
from course_ws.tooling.exercises import ROOT_ENV, course_root

ROOT = Path(__file__).parents[1]
SOLUTION = ROOT / "solutions" / "00_start" / "shout.py"
STARTER = ROOT / "exercises" / "00_start" / "shout.py"


def copy_course(destination: Path) -> Path:
    """What the checks need: the exercises, solutions, the checks and their conftests."""
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache")
    for folder in ("exercises", "solutions", "tests/exercises"):
        shutil.copytree(ROOT / folder, destination / folder, ignore=ignore)
    for file in (
        "pyproject.toml",
        "conftest.py",
        "tests/conftest.py",
        "tests/isolated_data_home.py",
        "tests/required.py",
    ):
        shutil.copy2(ROOT / file, destination / file)
    return destination


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    return copy_course(tmp_path / "my course")


def run_check(*args: str, cwd: Path, root: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != ROOT_ENV}
    if root is not None:
        env[ROOT_ENV] = str(root)
    return subprocess.run(
        [sys.executable, "-m", "course_ws", "check", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# -- which files get checked ---------------------------------------------------------


def test_a_copy_is_checked_as_the_copy(copy):
    (copy / "exercises/00_start/shout.py").write_text(SOLUTION.read_text())
    done = run_check("shout", cwd=copy)
    assert done.returncode == 0, done.stdout + done.stderr
    checked = copy.resolve() / "exercises" / "00_start" / "shout.py"
    assert f"Checking shout: {checked}" in done.stdout
    assert "shout: 4 of 4 checks pass — PASSED" in done.stdout
    assert str(STARTER) not in done.stdout  # the original, untouched starter fails


def test_the_original_starter_is_not_what_a_copy_checks(copy, tmp_path):
    """The reverse: the original is solved (here, in another copy) and the learner's copy
    is not: from inside the learner's copy, its untouched starter is checked, and fails."""
    solved = copy_course(tmp_path / "solved")
    (solved / "exercises/00_start/shout.py").write_text(SOLUTION.read_text())
    done = run_check("shout", cwd=copy / "exercises" / "00_start")  # a parent is the course
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"Checking shout: {copy.resolve()}/exercises/00_start/shout.py" in done.stdout
    assert "not yet" in done.stdout
    assert str(solved) not in done.stdout


def test_course_ws_root_wins_over_the_current_folder(copy):
    (copy / "exercises/00_start/shout.py").write_text(SOLUTION.read_text())
    done = run_check("shout", cwd=ROOT, root=copy)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Checking shout: {copy.resolve()}/exercises/00_start/shout.py" in done.stdout


def test_a_wrong_course_ws_root_is_one_line(tmp_path):
    done = run_check("shout", cwd=ROOT, root=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"course-ws check: error: {ROOT_ENV}={tmp_path} is not a course folder "
        "(with exercises/ and tests/exercises/)"
    )


def test_outside_any_course_the_package_checkout_is_used(tmp_path, monkeypatch):
    monkeypatch.delenv(ROOT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert course_root() == ROOT.resolve()


def test_the_report_names_the_absolute_path(copy, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(copy))
    report = check("shout", progress=False)
    assert report.path == copy.resolve() / "exercises" / "00_start" / "shout.py"
    assert report.path.is_absolute()
    assert str(report).splitlines()[0] == f"shout ({report.path}): 2 of 4 checks pass — not yet"


# -- what a failure says --------------------------------------------------------------

NEARLY_BOUNCER = '''"""bouncer, nearly: it forgets that a client may vanish."""

from websockets.asyncio.server import ServerConnection
from websockets.frames import CloseCode


async def handler(websocket: ServerConnection) -> None:
    async for message in websocket:  # raises ConnectionClosedError on a 1006
        if isinstance(message, bytes):
            await websocket.close(CloseCode.UNSUPPORTED_DATA, "text only")
        elif message == "ping":
            await websocket.send("pong")
        elif message == "bye":
            await websocket.close(CloseCode.NORMAL_CLOSURE, "bye")
        else:
            await websocket.send(message)
'''


def test_a_handler_that_raises_is_one_line_naming_the_learners_line(copy, monkeypatch):
    (copy / "exercises/02_echo/bouncer.py").write_text(NEARLY_BOUNCER)
    monkeypatch.setenv(ROOT_ENV, str(copy))
    report = check("bouncer", progress=False)
    [failed] = [result for result in report.results if not result.passed]
    assert failed.title == "A client that vanishes (1006) does not make the handler fail"
    assert failed.reason == (
        "the server logged an error when the client vanished: "
        'ConnectionClosedError raised at bouncer.py:8 in "async for message in websocket"'
    )


def test_an_exception_in_the_test_names_the_learners_line(tmp_path, monkeypatch):
    learner = tmp_path / "exercises" / "01_x" / "broken.py"
    learner.parent.mkdir(parents=True)
    learner.write_text("def accept_key(key):\n    return key + 1\n")
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    namespace: dict[str, object] = {}
    exec(compile(learner.read_text(), str(learner), "exec"), namespace)
    try:
        namespace["accept_key"]("abc")  # type: ignore[operator]
    except TypeError as exc:
        reason = check_plugin.explain("TypeError: ...", exc, [])
    assert reason == (
        'TypeError raised at broken.py:2 in "return key + 1": '
        'can only concatenate str (not "int") to str'
    )
    try:
        try:
            namespace["accept_key"]("abc")  # type: ignore[operator]
        except TypeError:
            pytest.fail("accept_key raised TypeError instead of answering")
    except pytest.fail.Exception as failure:
        reason = check_plugin.explain(str(failure), failure, [])
    assert reason == (
        'accept_key raised TypeError instead of answering, at broken.py:2 in "return key + 1"'
    )


def logged(exc: BaseException, message: str = "connection handler failed") -> logging.LogRecord:
    record = logging.LogRecord("websockets.server", logging.ERROR, __file__, 1, message, (), None)
    record.exc_info = (type(exc), exc, exc.__traceback__)
    return record


def test_what_a_handler_logged_explains_a_failure_unless_it_is_a_disconnect(tmp_path, monkeypatch):
    learner = tmp_path / "exercises" / "03_x" / "presence.py"
    learner.parent.mkdir(parents=True)
    learner.write_text(
        "from websockets.exceptions import ConnectionClosedError\n"
        "def handler(members):\n"
        "    return members['ada']\n"
        "def vanished():\n"
        "    raise ConnectionClosedError(None, None)\n"
    )
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    namespace: dict[str, Any] = {}
    exec(compile(learner.read_text(), str(learner), "exec"), namespace)
    with pytest.raises(KeyError) as bug:
        namespace["handler"]({})
    with pytest.raises(ConnectionClosedError) as gone:
        namespace["vanished"]()
    got_nothing = "expected bob to receive [], got nothing"
    assert check_plugin.explain(got_nothing, None, [logged(bug.value)]) == (
        f"{got_nothing} (KeyError raised at presence.py:3 in \"return members['ada']\")"
    )
    assert check_plugin.explain(got_nothing, None, [logged(gone.value)]) == got_nothing
    about_the_log = "a client vanished: got 'connection handler failed'"
    assert check_plugin.explain(about_the_log, None, [logged(gone.value)]) == (
        "a client vanished: got ConnectionClosedError raised at presence.py:5 in "
        '"raise ConnectionClosedError(None, None)"'
    )


def test_a_reason_stays_one_short_line():
    reason = check_plugin.one_line("\n" + "x" * 1000 + "\nsecond line")
    assert reason == "x" * (check_plugin.MAX_REASON - 1) + "…"


def test_an_error_elsewhere_than_the_learners_file_is_left_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    (tmp_path / "exercises").mkdir()
    with pytest.raises(KeyError) as raised:
        {}["missing"]  # this test file is not the learner's
    assert check_plugin.explain("expected 1, got 2", raised.value, []) == "expected 1, got 2"


# -- progress and speed ----------------------------------------------------------------

SLOW_CHECKS = '''"""Two checks: one at once, one two seconds later."""

import time


def test_quick():
    """The quick one"""


def test_slow():
    """The slow one"""
    time.sleep(2)
'''


def test_each_line_is_shown_as_soon_as_its_check_has_finished(copy, monkeypatch):
    (copy / "tests/exercises/test_shout.py").write_text(SLOW_CHECKS)
    monkeypatch.setenv(ROOT_ENV, str(copy))
    seen: list[tuple[float, str]] = []
    report = check("shout", progress=lambda line: seen.append((time.monotonic(), line)))
    ended = time.monotonic()
    lines = [line for _, line in seen]
    assert lines == [
        f"Checking shout: {report.path}",
        "  ✔ The quick one",
        "  ✔ The slow one",
    ]
    quick_at = seen[1][0]
    assert ended - quick_at > 1.5, "the quick check's line waited for the slow one"
    assert report.passed


def test_the_command_streams_then_gives_the_verdict(copy):
    done = run_check("shout", cwd=copy)
    lines = done.stdout.splitlines()
    assert lines[0] == f"Checking shout: {copy.resolve()}/exercises/00_start/shout.py"
    assert lines[-1] == "shout: 2 of 4 checks pass — not yet"
    assert "  ✔ Binary comes back unchanged, as binary" in lines


NEARLY_RECONNECT = '''"""reconnect, nearly: it forgets to close before returning."""

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError


async def collect(url, count, reconnect_delays):
    messages = []
    async for websocket in connect(url, reconnect_delays=reconnect_delays):
        try:
            async for message in websocket:
                messages.append(message)
                if len(messages) == count:
                    return messages
        except ConnectionClosedError:
            continue
    return messages
'''


def test_a_nearly_right_reconnect_is_quick_to_check(copy, monkeypatch):
    (copy / "exercises/02_echo/reconnect.py").write_text(NEARLY_RECONNECT)
    monkeypatch.setenv(ROOT_ENV, str(copy))
    started = time.monotonic()
    report = check("reconnect", progress=False)
    took = time.monotonic() - started
    assert [result.passed for result in report.results] == [True, True, True, True, False]
    assert "1011 instead of 1000" in report.results[-1].reason
    assert took < 12, f"checking took {took:.1f} s (it took 22 s when each test waited 5 s)"


def test_presence_keeps_duplicate_names(copy, monkeypatch):
    solution = (ROOT / "solutions/03_chat/presence.py").read_text()
    deduplicated = solution.replace("sorted(MEMBERS.values())", "sorted(set(MEMBERS.values()))")
    assert deduplicated != solution
    (copy / "exercises/03_chat/presence.py").write_text(deduplicated)
    monkeypatch.setenv(ROOT_ENV, str(copy))
    report = check("presence", progress=False)
    failed = [result for result in report.results if not result.passed]
    assert [result.title for result in failed] == [
        "Two connections with the same name are listed twice: the list keeps duplicates"
    ]
    assert re.search(r'expected .*\["ada", "ada"\].*got .*\["ada"\]', failed[0].reason)


def test_a_skipped_check_says_why_in_one_line():
    """A check that skips (redis-server missing) shows its reason, not a raw tuple."""
    from course_ws.tooling.check_plugin import _reason

    report = pytest.TestReport(
        "tests/exercises/test_x.py::test_y",
        ("tests/exercises/test_x.py", 3, "test_y"),
        {},
        "skipped",
        ("/course/tests/exercises/test_x.py", 205, "Skipped: redis-server is not installed"),
        "call",
    )
    assert _reason(report) == "redis-server is not installed"
