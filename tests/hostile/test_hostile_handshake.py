"""The hostile-input standard for the opening handshake, run against every catalogue server.

A server we would deploy answers a hostile or broken request with a 4xx that
says what was wrong (or hangs up), within a bounded time, without a 5xx and
without a traceback in its log, and then goes on serving everyone else. Each
test sends bytes over a plain socket (no client library would send them),
checks the answer, then checks the log and a normal echo on the same server.

============================================  =============================================
the request...                                every server answers...
============================================  =============================================
has a target ``urlsplit`` cannot parse         ``400`` with a text body naming the problem
asks for Sec-WebSocket-Version 8               ``426`` with ``Sec-WebSocket-Version: 13``
has no Host header                             ``400`` (RFC 6455 §4.2.1, RFC 9112 §3.2)
upgrades an unknown path                       ``404``
upgrades ``/echo`` with another method         ``405`` with ``Allow: GET``
has a 64 KiB header, or 1000 headers           a 4xx or a hang-up, within a few seconds
============================================  =============================================
"""

from __future__ import annotations

import contextlib
import socket
import time
from dataclasses import dataclass

import pytest
from websockets.sync.client import connect

from course_ws import BackgroundServer
from course_ws.clients.raw import upgrade_request
from course_ws.rfc6455 import HttpHeadReader, parse_response

TIMEOUT = 5.0
"""Seconds an attack may take, answer included: well under any server's handshake timeout."""

BAD_TARGETS = [
    "//[",
    "http://[::1/echo",
    "//[::1/echo",
    "http://[nothost]/echo",
    "http://]/echo",
]
"""Request targets that make ``urllib.parse.urlsplit`` raise ValueError."""


@dataclass(frozen=True)
class Answer:
    """What a server sent back to one attack; ``status`` is None if it hung up without a word."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    seconds: float
    log_mark: str | None
    """The server's last log line before the attack: what came after it is the attack's."""


def attack(server: BackgroundServer, data: bytes) -> Answer:
    """Send ``data`` and read the server's answer: a head, then its Content-Length body.

    A server may hang up before reading all of a large request (it has seen
    enough): the send or the read then fails with a reset, which counts as a
    hang-up. Waiting longer than TIMEOUT fails the test.
    """
    log_mark = server.logs[-1] if server.logs else None
    started = time.monotonic()
    reader = HttpHeadReader(max_size=2**16)
    result = None
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)  # a reset here: it stopped reading; see whether it said why
        try:
            while result is None:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                result = reader.feed(chunk)
            if result is not None:
                head, body = result
                response = parse_response(head)
                length = int(response.headers.get("content-length", "0"))
                while len(body) < length and (chunk := sock.recv(65536)):
                    body += chunk
        except ConnectionResetError:
            pass
        except TimeoutError:
            pytest.fail(f"{server.name} neither answered nor hung up within {TIMEOUT:g} s")
    seconds = time.monotonic() - started
    if result is None:
        return Answer(None, {}, b"", seconds, log_mark)
    return Answer(response.status, response.headers, body, seconds, log_mark)


def logged_since(server: BackgroundServer, mark: str | None) -> list[str]:
    """The server's log lines after ``mark`` (all of them if ``mark`` has rotated out)."""
    lines = server.logs
    if mark in lines:
        return lines[len(lines) - lines[::-1].index(mark) :]
    return lines


def assert_unharmed(server: BackgroundServer, answer: Answer) -> None:
    """A normal client still gets its echo, and the attack logged no traceback."""
    with connect(server.url + "/echo", open_timeout=TIMEOUT, close_timeout=TIMEOUT) as websocket:
        websocket.send("still serving")
        assert websocket.recv(timeout=TIMEOUT) == "still serving"
    tracebacks = [line for line in logged_since(server, answer.log_mark) if "Traceback" in line]
    assert not tracebacks, "\n".join(tracebacks)


def assert_refused(answer: Answer, status: int) -> None:
    """``answer`` is ``status`` with a short text body that says why."""
    assert answer.status == status, answer
    assert answer.body.strip(), f"a {status} should say what was wrong"
    assert answer.headers.get("content-type", "").startswith("text/plain"), answer.headers


@pytest.mark.parametrize("target", BAD_TARGETS)
def test_request_target_that_is_not_a_url_is_400(server, target):
    answer = attack(server, upgrade_request(server.url, target))
    assert_refused(answer, 400)
    assert_unharmed(server, answer)


@pytest.mark.parametrize("target", BAD_TARGETS)
def test_plain_get_of_a_bad_target_is_400(server, target):
    request = f"GET {target} HTTP/1.1\r\nHost: {server.host}:{server.port}\r\n\r\n".encode()
    answer = attack(server, request)
    assert_refused(answer, 400)
    assert_unharmed(server, answer)


def test_unsupported_version_is_426_naming_the_one_we_speak(server):
    answer = attack(server, upgrade_request(server.url, "/echo", Sec_WebSocket_Version="8"))
    assert_refused(answer, 426)
    assert answer.headers.get("sec-websocket-version") == "13", answer.headers
    assert_unharmed(server, answer)


def test_missing_host_is_400(server):
    answer = attack(server, upgrade_request(server.url, "/echo", Host=None))
    assert_refused(answer, 400)
    assert_unharmed(server, answer)


def test_unknown_path_is_404(server):
    answer = attack(server, upgrade_request(server.url, "/no/such/endpoint"))
    assert_refused(answer, 404)
    assert_unharmed(server, answer)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS"])
def test_other_method_on_a_websocket_path_is_405(server, method):
    answer = attack(server, upgrade_request(server.url, "/echo", method))
    assert_refused(answer, 405)
    assert "GET" in answer.headers.get("allow", ""), answer.headers
    assert_unharmed(server, answer)


HUGE_HEADS = {
    "one 64 KiB header": [("X-Hostile", "a" * 2**16)],
    "1000 headers": [(f"X-Hostile-{n}", "a") for n in range(1000)],
}


@pytest.mark.parametrize("extra", HUGE_HEADS.values(), ids=HUGE_HEADS.keys())
def test_huge_head_is_refused_quickly(server, extra):
    head = upgrade_request(server.url, "/echo").removesuffix(b"\r\n")
    request = head + b"".join(f"{n}: {v}\r\n".encode() for n, v in extra) + b"\r\n"
    answer = attack(server, request)
    assert answer.status is None or 400 <= answer.status < 500, answer
    assert answer.seconds < TIMEOUT
    assert_unharmed(server, answer)


def test_garbage_instead_of_http_is_refused(server):
    answer = attack(server, b"HELLO THERE\r\n\r\n")
    assert answer.status is None or 400 <= answer.status < 500, answer
    assert_unharmed(server, answer)
