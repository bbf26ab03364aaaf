"""What the chat checks expect of a :class:`ChatClient`, with failures a learner can read.

Shared by the checks of every chat exercise (``from chat_expect import expect``): pytest
puts this folder on ``sys.path`` for the checks in it.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from course_ws.clients.chat import ChatClient

TIMEOUT = 2.0
"""Seconds for an event that should come (it takes milliseconds on loopback)."""
QUIET = 0.3
"""Seconds of silence that count as "nothing arrived"."""

Event = dict[str, Any]


async def expect(client: ChatClient, after: str) -> Event:
    """The next event ``client`` receives, within ``TIMEOUT``; a clear failure otherwise."""
    try:
        return await client.event(timeout=TIMEOUT)
    except TimeoutError:
        pytest.fail(f"{after}: expected an event for {client.user}, got nothing in {TIMEOUT:g} s")
    except ConnectionClosed as closed:
        pytest.fail(
            f"{after}: expected an event for {client.user}, the connection closed ({closed})"
        )
    except (json.JSONDecodeError, TypeError) as wrong:
        pytest.fail(f"{after}: expected a JSON text event for {client.user}: {wrong}")


async def expect_kind(client: ChatClient, kind: str, after: str) -> Event:
    """The next event, which must be of type ``kind``."""
    event = await expect(client, after)
    assert event.get("type") == kind, f"{after}: expected a {kind} event, got {event}"
    return event


async def expect_silence(client: ChatClient, after: str, why: str = "") -> None:
    """Nothing reaches ``client`` for ``QUIET`` seconds (``why``: what the learner is told)."""
    try:
        event = await client.event(timeout=QUIET)
    except TimeoutError:
        return
    except ConnectionClosed as closed:
        pytest.fail(f"{after}: the connection of {client.user} closed ({closed})")
    because = f" ({why})" if why else ""
    pytest.fail(f"{after}: expected nothing for {client.user}{because}, got {event}")
