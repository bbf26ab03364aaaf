"""Checks for exercise ``anonymous_refused`` (exercises/05_channels/anonymous_refused.py).

The learner's Channels ``app`` is served by the course's uvicorn host on a free
127.0.0.1 port (:func:`course_ws.serve_in_background`), and a ``websockets``
client looks at what goes over the wire: the handshake's HTTP status, then the
greeting. Users are logged in here, by the check itself, as a login view would
(Django's ``login`` on a session saved in the database, then its cookie); that
is ORM code, so it runs in a thread (``database_sync_to_async``), never on the
event loop. The database is the process's one, ``ServeOptions().database`` (in
the test run's own ``XDG_DATA_HOME``). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from course_ws import BackgroundServer, serve_in_background

TIMEOUT = 2.0
"""Seconds for an answer that should come (it takes milliseconds on loopback)."""


@pytest.fixture
async def server(load: Callable[[str], Any]) -> AsyncIterator[BackgroundServer]:
    """The learner's app on a free port, over a database whose tables exist."""
    module = load("anonymous_refused")  # configures Django first
    from course_ws.servers._channels.chat import migrate

    await in_thread(migrate)
    with serve_in_background(module.app, log_level="info") as running:
        yield running


def logged_in(username: str) -> str:
    """Log ``username`` in as a login view would (Django's own ``login``); its ``Cookie``.

    Sync code: run it with ``database_sync_to_async``. Django is configured, and
    the tables created, by the ``server`` fixture.
    """
    from django.conf import settings
    from django.contrib.auth import get_user_model, login
    from django.contrib.sessions.backends.db import SessionStore
    from django.http import HttpRequest

    user, _ = get_user_model().objects.get_or_create(username=username)
    request = HttpRequest()
    request.session = SessionStore()
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session.save()
    return f"{settings.SESSION_COOKIE_NAME}={request.session.session_key}"


def logged_out(cookie: str) -> None:
    """Log out the session of ``cookie`` as Django's ``logout`` does: flush it. Sync code."""
    from django.contrib.sessions.backends.db import SessionStore

    SessionStore(session_key=cookie.partition("=")[2]).flush()


async def in_thread(function: Callable[..., Any], *args: Any) -> Any:
    from channels.db import database_sync_to_async

    return await database_sync_to_async(function)(*args)


async def greeting(server: BackgroundServer, who: str, cookie: str | None, query: str = ""):
    """What ``/whoami`` sends first after its handshake; a clear failure if it refuses."""
    headers = {"Cookie": cookie} if cookie else {}
    try:
        websocket = await connect(
            f"{server.url}/whoami{query}", additional_headers=headers, open_timeout=TIMEOUT
        )
    except InvalidStatus as refusal:
        status = refusal.response.status_code
        pytest.fail(f"{who}: expected the handshake accepted, it was refused with HTTP {status}")
    except TimeoutError:
        pytest.fail(f"{who}: no answer to the handshake within {TIMEOUT:g} s")
    async with websocket:
        try:
            async with asyncio.timeout(TIMEOUT):
                return await websocket.recv()
        except ConnectionClosed as closed:
            pytest.fail(f"{who}: accepted, then closed ({closed}) without a greeting")
        except TimeoutError:
            pytest.fail(f"{who}: accepted, then no greeting within {TIMEOUT:g} s")


async def expect_refused(server: BackgroundServer, who: str, cookie: str | None) -> None:
    """The handshake is refused with 403: a close *before* accept, not an accept and a close."""
    headers = {"Cookie": cookie} if cookie else {}
    try:
        async with connect(
            f"{server.url}/whoami", additional_headers=headers, open_timeout=TIMEOUT
        ) as websocket:
            try:
                async with asyncio.timeout(TIMEOUT):
                    await websocket.recv()
            except ConnectionClosed:
                pytest.fail(
                    f"{who}: the handshake was accepted, then closed with "
                    f"{websocket.close_code}: refuse *before* accepting "
                    "(raise DenyConnection in connect)"
                )
            except TimeoutError:
                pass
            pytest.fail(f"{who}: expected a refusal (HTTP 403), the handshake was accepted")
    except InvalidStatus as refusal:
        status = refusal.response.status_code
        assert status == 403, f"{who}: expected a refusal with HTTP 403, got {status}"
    except TimeoutError:
        pytest.fail(f"{who}: no answer to the handshake within {TIMEOUT:g} s")


async def test_an_anonymous_user_is_refused_with_403(server):
    """Without a session cookie the handshake is refused with HTTP 403, before accepting"""
    await expect_refused(server, "no cookie", None)


async def test_a_session_that_does_not_exist_is_refused(server):
    """A cookie naming no session (made up, or expired) is anonymous too: 403"""
    await expect_refused(server, "a made-up sessionid", "sessionid=nosuchsession0123456789abcdef")


async def test_a_logged_in_user_is_greeted_by_name(server):
    """A logged-in user is accepted and greeted with {"type": "hello", "user": name}"""
    for name in ["ada", "bob"]:
        cookie = await in_thread(logged_in, name)
        got = await greeting(server, f"{name}, logged in", cookie)
        expected = f'{{"type": "hello", "user": "{name}"}}'
        assert isinstance(got, str), f"{name}, logged in: expected a text frame, got {got!r}"
        assert got.replace(" ", "") == expected.replace(" ", ""), (
            f"{name}, logged in: expected the text {expected}, got {got!r}"
        )


async def test_the_name_comes_from_the_session_not_the_url(server):
    """The name greeted is the session's: ?user=mallory in the URL changes nothing"""
    cookie = await in_thread(logged_in, "ada")
    got = await greeting(server, "ada, logged in, with ?user=mallory", cookie, "?user=mallory")
    expected = '{"type": "hello", "user": "ada"}'
    assert isinstance(got, str), f"ada, with ?user=mallory: expected a text frame, got {got!r}"
    assert got.replace(" ", "") == expected.replace(" ", ""), (
        f"ada, logged in, with ?user=mallory: expected {expected}, got {got!r}"
    )


async def test_a_logged_out_session_is_refused(server):
    """After logout, the same cookie is anonymous: 403 (check is_anonymous, not the cookie)"""
    cookie = await in_thread(logged_in, "carol")
    await greeting(server, "carol, logged in", cookie)
    await in_thread(logged_out, cookie)
    await expect_refused(server, "carol's cookie after logout", cookie)
