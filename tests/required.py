"""Tests that need a real program (redis-server, nginx, chromium) ask for it here.

A module of its own, not ``conftest``: a test module that wrote ``from conftest
import ...`` got whichever ``conftest`` Python had imported first (with
``pytest tests notebooks``, ``tests/rfc6455/conftest.py``), and failed to collect.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from course_ws.hosting.programs import find_program

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_program(name: str) -> Path:
    """The path of ``name`` (redis-server, nginx, chromium); skip loudly if absent, fail in CI."""
    path = find_program(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {name}); this test needs the real one"
        if IN_CI:
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    return path
