"""The ``course-ws`` command as a user runs it: a real process, real signals."""

from __future__ import annotations

import re
import resource
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import fields

import pytest
from serving import COURSE_WS, course_ws_serve
from websockets.exceptions import ConnectionClosedOK
from websockets.sync.client import connect

from course_ws import serve_in_background
from course_ws.hosting.catalogue import CATALOGUE
from course_ws.load.system import open_files_soft_limit
from course_ws.options import ServeOptions


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COURSE_WS, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def serving() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``course-ws serve echo --port 0`` running, and its /echo URL read from what it prints."""
    process = subprocess.Popen(
        [COURSE_WS, "serve", "echo", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert re.match(r"echo \(websockets\) listening on 127\.0\.0\.1:\d+$", first), first
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/echo", url)
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def test_list_shows_every_server_with_its_endpoints():
    done = run("list")
    assert done.returncode == 0
    assert re.search(r"^echo\s+websockets\s+sends every", done.stdout, re.M)
    assert "endpoints: /echo, GET /healthz" in done.stdout


def test_serve_help_has_a_flag_for_every_option():
    done = run("serve", "chat", "--help")
    assert done.returncode == 0
    for field in fields(ServeOptions):
        assert f"--{field.name.replace('_', '-')} " in done.stdout, field.name
    assert re.search(r"--port N\s+TCP port .*\(default:\s+8000\)", done.stdout, re.S)
    assert re.search(r"--max-size SIZE\s+Largest .*\(default:\s+1MiB\)", done.stdout, re.S)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "nope"], f"unknown server 'nope'; choose from {', '.join(CATALOGUE)}"),
        (["serve", "echo", "--port", "x"], "argument --port: 'x' is not a whole number"),
        (["serve", "echo", "--port", "70000"], "--port must be 0..65535, got 70000"),
        (["serve", "echo", "--max-size", "lots"], "'lots' is not a size"),
        (["serve", "chat", "--ping-interval=-3s"], "--ping-interval: '-3s' is not a duration"),
        (["serve", "chat", "--history-size", "0"], "--history-size must be at least 1, got 0"),
        (["serve", "echo", "--log-level", "loud"], "invalid choice: 'loud'"),
        (["check", "nope"], "no exercise called 'nope'; the exercises are: "),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: command"),
    ],
)
def test_bad_arguments_get_one_line_and_status_2(args, message):
    done = run(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_serve_closes_clients_with_1001_on_signal_and_exits_0(serving, signum):
    process, url = serving
    with connect(url) as websocket:
        websocket.send(b"\x00\x01")
        assert websocket.recv(timeout=2) == b"\x00\x01"
        process.send_signal(signum)
        with pytest.raises(ConnectionClosedOK) as closed:
            websocket.recv(timeout=10)
    assert closed.value.rcvd.code == 1001
    assert process.wait(10) == 0
    assert process.stderr is not None
    assert "Traceback" not in process.stderr.read()


def test_serve_on_a_busy_port_says_so():
    with serve_in_background("echo") as busy:
        done = run("serve", "echo", "--port", str(busy.port))
    assert done.returncode == 1
    assert f"port {busy.port} is in use on 127.0.0.1: pass --port 0" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_reports_pass_and_fail():
    starter = run("check", "shout")
    assert starter.returncode == 1
    assert "✘ Text comes back in upper case" in starter.stdout
    assert "expected 'HELLO', got 'hello'" in starter.stdout
    solved = run("check", "shout", "--solutions")
    assert solved.returncode == 0
    assert "4 of 4 checks pass — PASSED" in solved.stdout


def test_doctor_reports_and_passes_here():
    done = run("doctor")
    assert done.returncode == 0, done.stdout
    assert re.search(r"ok\s+websockets\s+\d+\.\d+", done.stdout)
    for program in ("redis-server", "nginx", "chromium"):
        assert program in done.stdout


@pytest.mark.parametrize("hard", [256, 8192])
def test_serve_raises_its_open_files_limit_to_the_hard_one_and_warns_when_that_is_low(
    tmp_path, hard
):
    """One open file per connection: a soft limit of 256 would refuse the 250th client."""
    hard = min(hard, resource.getrlimit(resource.RLIMIT_NOFILE)[1])

    def started_low() -> None:  # as from a shell whose `ulimit -n` is 256
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))

    log = tmp_path / "serve.log"
    with course_ws_serve("echo", log=log, log_level="debug", preexec_fn=started_low) as server:
        assert open_files_soft_limit(server.process.pid) == hard
    assert server.process.returncode == 0
    logged = log.read_text()
    low = f"only {hard} open files allowed (the hard limit)"
    assert (low in logged) == (hard < 4096), logged
    if hard > 256:
        assert f"soft limit raised from 256 to {hard:,} (the hard limit)" in logged, logged
