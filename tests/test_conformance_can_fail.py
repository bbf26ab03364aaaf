"""The conformance suite can fail: against ``echo``, which has no chat, every chat test fails."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).parents[1]
NOT_ABOUT_CHAT = (
    "test_healthz_is_200_ok",
    "test_echo_endpoint_echoes_text_and_binary",
    "test_unknown_paths_are_404",
    "test_unknown_http_path_is_404",
)
"""Endpoints that echo really does serve like a chat server: these may pass."""


def test_the_suite_fails_against_a_server_without_chat(tmp_path):
    report = tmp_path / "report.xml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/conformance",
            "--conformance-server",
            "echo",
            "-p",
            "no:cacheprovider",
            "-q",
            f"--junitxml={report}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout[-2000:]
    cases = ET.parse(report).getroot().iter("testcase")
    passed = [
        case.get("name", "")
        for case in cases
        if not any(child.tag in {"failure", "error", "skipped"} for child in case)
    ]
    unexpected = [name for name in passed if not name.startswith(NOT_ABOUT_CHAT)]
    assert not unexpected, f"chat tests passed against echo: {unexpected}"
    assert len(passed) < 15
