"""``course-ws doctor``: is this machine ready for the course?

It checks what ``pyproject.toml`` asks for, as installed (Python and every
runtime dependency, each against its lower bound), and looks for the external
programs the later chapters use. Missing packages make it fail; missing
programs only say which chapters need them and how to install them.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from importlib import metadata

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from course_ws.hosting.programs import PROGRAMS

DISTRIBUTION = "course-ws"


@dataclass(frozen=True)
class Finding:
    """One line of the report."""

    name: str
    found: str
    wanted: str
    ok: bool
    required: bool
    advice: str = ""

    def line(self, width: int) -> str:
        mark = "ok " if self.ok else ("MISSING" if self.required else "absent ")
        text = f"  {mark:7} {self.name:<{width}} {self.found:<14} {self.wanted}"
        return text.rstrip()


@dataclass(frozen=True)
class Report:
    """Everything ``doctor`` found; ``ok`` is false when a required piece is missing."""

    python: Finding
    packages: tuple[Finding, ...]
    programs: tuple[Finding, ...]

    @property
    def ok(self) -> bool:
        return self.python.ok and all(finding.ok for finding in self.packages)

    @property
    def missing_programs(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.programs if not finding.ok)

    def __str__(self) -> str:
        width = max(len(f.name) for f in (self.python, *self.packages, *self.programs))
        lines = ["Python", self.python.line(width), "Packages (from pyproject.toml)"]
        lines += [finding.line(width) for finding in self.packages]
        lines.append("Programs (optional: only some chapters need them)")
        lines += [finding.line(width) for finding in self.programs]
        lines.append("")
        if self.ok:
            lines.append("Everything the course's Python code needs is installed.")
        else:
            lines.append("Missing pieces: run `make lab` (or `pip install -e .`) to install them.")
        if self.missing_programs:
            packages = " ".join(finding.advice for finding in self.missing_programs)
            lines.append(f"To run every chapter, install: sudo apt-get install {packages}")
        return "\n".join(lines)


def _check_python(requires: str | None) -> Finding:
    wanted = SpecifierSet(requires or ">=3.11")
    version = platform.python_version()
    return Finding("python", version, str(wanted), version in wanted, required=True)


def _check_requirement(requirement: Requirement) -> Finding:
    try:
        version = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        return Finding(requirement.name, "-", str(requirement.specifier), False, required=True)
    ok = requirement.specifier.contains(version, prereleases=True)
    return Finding(requirement.name, version, str(requirement.specifier), ok, required=True)


def _check_programs() -> tuple[Finding, ...]:
    findings = []
    for program in PROGRAMS.values():
        path = program.find()
        version = program.version(path) if path else "-"
        findings.append(
            Finding(
                program.name,
                version,
                program.needed_for,
                ok=path is not None,
                required=False,
                advice=program.debian_package,
            )
        )
    return tuple(findings)


def diagnose() -> Report:
    """Check Python, the installed packages and the external programs; return the report."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise RuntimeError(
            f"{DISTRIBUTION} is not installed: run `make lab` or `pip install -e .`"
        ) from None
    requirements = [Requirement(text) for text in dist.requires or []]
    runtime = [req for req in requirements if req.marker is None]
    return Report(
        python=_check_python(dist.metadata["Requires-Python"]),
        packages=tuple(_check_requirement(req) for req in runtime),
        programs=_check_programs(),
    )
