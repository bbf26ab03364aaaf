"""doctor checks exactly what pyproject.toml asks for, and tells absent programs apart."""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from course_ws.hosting import programs
from course_ws.tooling import doctor

PYPROJECT = Path(__file__).parents[1] / "pyproject.toml"


def runtime_requirements() -> list[Requirement]:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    return [Requirement(text) for text in project["dependencies"]]


def test_every_runtime_dependency_is_checked_against_its_lower_bound():
    report = doctor.diagnose()
    checked = {finding.name: finding.wanted for finding in report.packages}
    wanted = {req.name: str(req.specifier) for req in runtime_requirements()}
    assert checked == wanted
    assert report.python.wanted == ">=3.11"


def test_a_missing_package_fails(monkeypatch):
    real_version = metadata.version

    def version(name: str) -> str:
        if name == "starlette":
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(doctor.metadata, "version", version)
    report = doctor.diagnose()
    assert not report.ok
    assert "MISSING starlette" in " ".join(str(report).split())
    assert "Missing pieces" in str(report)


def test_a_too_old_package_fails(monkeypatch):
    real_version = metadata.version
    monkeypatch.setattr(
        doctor.metadata,
        "version",
        lambda name: "1.0" if name == "websockets" else real_version(name),
    )
    report = doctor.diagnose()
    assert not report.ok
    assert [f.name for f in report.packages if not f.ok] == ["websockets"]


def test_absent_programs_are_advice_not_failure(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setattr(programs, "EXTRA_DIRS", ())
    report = doctor.diagnose()
    assert report.ok
    assert {f.name for f in report.missing_programs} == {"redis-server", "nginx", "chromium"}
    assert "sudo apt-get install redis-server nginx chromium" in str(report)
