"""Where the exercises, their solutions and their checks live, and how to load one.

An exercise ``NAME`` is the file ``exercises/NN_topic/NAME.py``; its solution is
``solutions/NN_topic/NAME.py`` and its check ``tests/exercises/test_NAME.py``.
Names are unique across the course, so a learner only ever types ``NAME``.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

TARGETS = ("exercises", "solutions")
SUFFIXES = (".py", ".html")
"""What an exercise file can be: a Python module or program, or a web page (its script)."""
ROOT_ENV = "COURSE_WS_ROOT"
_fresh_names = itertools.count()


class UnknownExerciseError(LookupError):
    """An exercise name that the course does not have."""


def course_root() -> Path:
    """The folder holding ``exercises/``, ``solutions/`` and ``tests/``: the course checkout.

    ``$COURSE_WS_ROOT`` wins (and must be one); then the current folder and its
    parents (a learner who copied the course checks *their* copy); then the folder
    above the installed package, which is right for the editable install that
    ``make lab`` makes.
    """
    if os.environ.get(ROOT_ENV):
        chosen = Path(os.environ[ROOT_ENV]).expanduser().resolve()
        if not _is_course(chosen):
            raise FileNotFoundError(
                f"{ROOT_ENV}={os.environ[ROOT_ENV]} is not a course folder "
                "(with exercises/ and tests/exercises/)"
            )
        return chosen
    here = Path.cwd().resolve()
    for root in [here, *here.parents, Path(__file__).resolve().parents[2]]:
        if _is_course(root):
            return root
    raise FileNotFoundError(
        "cannot find the course folder (with exercises/ and tests/exercises/): "
        f"install the course with `make lab` from its checkout, or set {ROOT_ENV}"
    )


def _is_course(folder: Path) -> bool:
    return (folder / "exercises").is_dir() and (folder / "tests" / "exercises").is_dir()


@dataclass(frozen=True)
class Exercise:
    """One exercise: its starter, its solution and its check."""

    name: str
    chapter: str
    root: Path
    suffix: str = ".py"

    def path(self, target: str = "exercises") -> Path:
        """The file learners edit (``exercises``) or its solved twin (``solutions``)."""
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, not {target!r}")
        return self.root / target / self.chapter / f"{self.name}{self.suffix}"

    @property
    def check_file(self) -> Path:
        return self.root / "tests" / "exercises" / f"test_{self.name}.py"


def all_exercises(root: Path | None = None) -> list[Exercise]:
    """Every exercise of the course, in chapter order."""
    root = root or course_root()
    return [
        Exercise(path.stem, path.parent.name, root, path.suffix)
        for path in sorted((root / "exercises").glob("[0-9][0-9]_*/*"))
        if path.suffix in SUFFIXES and not path.name.startswith("_")
    ]


def find_exercise(name: str, root: Path | None = None) -> Exercise:
    """The exercise called ``name``; the error lists the names there are."""
    exercises = all_exercises(root)
    for exercise in exercises:
        if exercise.name == name:
            return exercise
    known = ", ".join(exercise.name for exercise in exercises)
    raise UnknownExerciseError(f"no exercise called {name!r}; the exercises are: {known}")


def load_exercise(name: str, target: str = "exercises") -> ModuleType:
    """Import the exercise file afresh (edits made since the last call are seen)."""
    path = find_exercise(name).path(target)
    module_name = f"course_ws_{target}_{name}_{next(_fresh_names)}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
