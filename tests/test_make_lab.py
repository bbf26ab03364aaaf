"""``make lab`` really serves JupyterLab with the course's notebooks (started headless here),
and installs what it says: the lean ``[lab]`` set for learners, once, into this folder's own
``.venv``."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
STARTUP = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_make_lab_serves_the_notebooks(tmp_path):
    port, token = free_port(), secrets.token_hex(8)
    lab_args = f"--no-browser --ip=127.0.0.1 --port={port} --IdentityProvider.token={token}"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path)}
    process = subprocess.Popen(
        ["make", "--no-print-directory", "lab", f"LAB_ARGS={lab_args}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api/contents/notebooks?token={token}"
    try:
        deadline = time.monotonic() + STARTUP
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    listing = json.load(response)
                break
            except (urllib.error.URLError, ConnectionError):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"make lab did not serve {url}: {process.stderr.read()[-2000:]!r}")
                time.sleep(0.5)
        names = {item["name"] for item in listing["content"]}
        assert "00-start-here.ipynb" in names
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/lab?token={token}", timeout=5
        ) as page:
            assert b"JupyterLab" in page.read()
    finally:
        stop_group(process)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """End make, JupyterLab and its kernels: SIGTERM, then SIGKILL after 20 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


# -- what `make` would do, read with `make -n` (nothing is installed) ------------------


def dry_run(folder: Path, target: str) -> str:
    done = subprocess.run(
        ["make", "--no-print-directory", "-n", target],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


def course_without_venv(tmp_path: Path) -> Path:
    folder = tmp_path / "course"
    folder.mkdir(parents=True)
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, folder / name)
    return folder


def fake_venv(folder: Path, made_for: Path) -> None:
    (folder / ".venv" / "bin").mkdir(parents=True)
    (folder / ".venv" / "pyvenv.cfg").write_text(
        f"version = 3.11.7\ncommand = /usr/bin/python3 -m venv {made_for}\n"
    )


def test_the_learners_install_is_the_lab_extra_with_pips_progress(tmp_path):
    commands = dry_run(course_without_venv(tmp_path), "lab")
    assert "-m venv .venv" in commands
    assert "pip install -e '.[lab]'" in commands
    assert "[dev]" not in commands
    assert "lab,dev" not in commands
    assert "--quiet" not in commands
    assert " -q " not in commands
    assert "creating a virtual environment" in commands  # said before it happens
    assert "MB to download" in commands


def test_make_test_installs_the_dev_extra_too(tmp_path):
    assert "pip install -e '.[lab,dev]'" in dry_run(course_without_venv(tmp_path), "test")


def test_each_install_happens_once_and_again_when_pyproject_changes(tmp_path):
    folder = course_without_venv(tmp_path)
    fake_venv(folder, folder / ".venv")
    stamp = folder / ".venv" / ".installed-lab"
    stamp.touch()
    later = time.time() + 10
    os.utime(stamp, (later, later))
    assert "pip install" not in dry_run(folder, ".venv/.installed-lab")
    os.utime(folder / "pyproject.toml", (later + 10, later + 10))
    assert "pip install -e '.[lab]'" in dry_run(folder, ".venv/.installed-lab")


def test_a_venv_copied_from_another_folder_is_made_again(tmp_path):
    folder = course_without_venv(tmp_path)
    fake_venv(folder, Path("/somewhere/else/.venv"))
    commands = dry_run(folder, ".venv/.installed-lab")
    assert "was made for /somewhere/else/.venv; making a new one" in commands
    assert "rm -rf .venv" in commands
    assert "-m venv .venv" in commands

    at_home = course_without_venv(tmp_path / "home")
    fake_venv(at_home, at_home / ".venv")
    assert "-m venv" not in dry_run(at_home, ".venv/.installed-lab")
