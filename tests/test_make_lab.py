"""``make lab`` really serves JupyterLab with the course's notebooks (started headless here),
and installs what it says: the lean ``[lab]`` set for learners, once, into this folder's own
``.venv``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).parents[1]
STARTUP = 60


def test_make_lab_serves_the_notebooks(tmp_path, make_lab):
    with make_lab(tmp_path, startup=STARTUP) as lab:
        url = f"{lab.url}/api/contents/notebooks?token={lab.token}"
        with urllib.request.urlopen(url, timeout=5) as response:
            listing = json.load(response)
        names = {item["name"] for item in listing["content"]}
        assert "00-start-here.ipynb" in names
        with urllib.request.urlopen(f"{lab.url}/lab?token={lab.token}", timeout=5) as page:
            assert b"JupyterLab" in page.read()


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
