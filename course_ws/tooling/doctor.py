"""``course-ws doctor``: is this machine ready for the course?

It checks what ``pyproject.toml`` asks for, as installed (Python, every runtime
dependency and every package of the ``lab`` extra that ``make lab`` installs,
each against its lower bound), and looks for the external
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
LAB_EXTRA = "lab"
"""The extra a learner installs: JupyterLab, plots, and pytest for the exercise checks."""


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
    lab: tuple[Finding, ...] = ()
    """The ``lab`` extra: JupyterLab, matplotlib, and what the exercise checks run on."""

    @property
    def ok(self) -> bool:
        return self.python.ok and all(finding.ok for finding in (*self.packages, *self.lab))

    @property
    def missing_programs(self) -> tuple[Finding, ...]:
        return tuple(finding for finding in self.programs if not finding.ok)

    def __str__(self) -> str:
        found = (self.python, *self.packages, *self.lab, *self.programs)
        width = max(len(finding.name) for finding in found)
        lines = ["Python", self.python.line(width), "Packages (from pyproject.toml)"]
        lines += [finding.line(width) for finding in self.packages]
        if self.lab:
            lines.append(
                f"Packages for JupyterLab and the exercise checks (the [{LAB_EXTRA}] extra)"
            )
            lines += [finding.line(width) for finding in self.lab]
        lines.append("Programs (optional: only some chapters need them)")
        lines += [finding.line(width) for finding in self.programs]
        lines.append("")
        if self.ok:
            lines.append("Everything the course's Python code needs is installed.")
        else:
            lines.append(
                "Missing pieces: run `make lab` (or `pip install -e '.[lab]'`) to install them."
            )
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
    lab = [
        req
        for req in requirements
        if req.marker is not None and req.marker.evaluate({"extra": LAB_EXTRA})
    ]
    return Report(
        python=_check_python(dist.metadata["Requires-Python"]),
        packages=tuple(_check_requirement(req) for req in runtime),
        programs=_check_programs(),
        lab=tuple(_check_requirement(req) for req in lab),
    )
