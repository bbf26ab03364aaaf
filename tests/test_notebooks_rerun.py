"""Every notebook survives a learner running each cell twice (Shift+Enter, then again).

Learners re-run cells: after an error, after editing, or by accident. Each notebook runs
here in one kernel of this environment (as ``--nbval-current-env`` does), from
``notebooks/``, each code cell twice in a row: cell 1, cell 1 again, cell 2, cell 2 again...
Any error fails the test, naming the notebook, the cell, which run, the first lines of the
cell's source and the error. Cells the notebook marks as expected to raise (nbval's
``raises-exception`` tag or ``# NBVAL_RAISES_EXCEPTION``) may raise; cells nbval skips
(``nbval-skip`` / ``# NBVAL_SKIP``) are skipped here too.
"""

from __future__ import annotations

import copy
import re
import time
from pathlib import Path

import ipykernel.kernelspec
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from traitlets import default

NOTEBOOKS_DIR = Path(__file__).parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("*.ipynb"))
CELL_TIMEOUT = 120  # s, for one run of one cell
NOTEBOOK_BUDGET = 420  # s, for all the runs of one notebook; pytest-timeout backs it up
STARTUP_TIMEOUT = 60  # s, for the kernel to start
SOURCE_LINES = 4  # of a failing cell's source, in the report
CURRENT_ENV = "course-ws-current-env"

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
TRACEBACK = "Traceback (most recent call last)"


class CurrentEnvKernelSpecs(KernelSpecManager):
    """Knows one more kernel: ipykernel in this very interpreter (nbval's current env)."""

    def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
        if kernel_name == CURRENT_ENV:
            return self.kernel_spec_class(
                resource_dir=ipykernel.kernelspec.RESOURCES,
                **ipykernel.kernelspec.get_kernel_dict(),
            )
        return super().get_kernel_spec(kernel_name)


class CurrentEnvKernelManager(AsyncKernelManager):
    @default("kernel_spec_manager")
    def _current_env_specs(self) -> KernelSpecManager:
        return CurrentEnvKernelSpecs(parent=self)


def markers(cell: nbformat.NotebookNode) -> set[str]:
    """nbval's markers on a cell, from its tags and its ``# NBVAL_...`` comments."""
    found = {tag.lower() for tag in cell.metadata.get("tags", [])}
    for line in cell.source.splitlines():
        line = line.strip()
        if line.startswith("#"):
            found.add(line.lstrip("#").strip().lower().replace("_", "-"))
    return found


def may_raise(cell: nbformat.NotebookNode) -> bool:
    return bool(markers(cell) & {"raises-exception", "nbval-raises-exception"})


def skipped(cell: nbformat.NotebookNode) -> bool:
    return "nbval-skip" in markers(cell)


def problems(outputs: list, committed: list) -> list[str]:
    """The errors among a run's outputs: error outputs, and tracebacks printed to a stream
    (a background thread's crash) where the committed outputs show none."""
    found = []
    for output in outputs:
        if output.output_type == "error":
            frames = [ANSI.sub("", block).strip() for block in output.get("traceback", [])]
            # IPython's blocks: a header, one per frame ("Cell In[3], line 4" or
            # "File .../x.py:12, in f()", then its lines), the exception last.
            where = [
                block.splitlines()[0][:120]
                for block in frames[:-1]
                if block.startswith(("Cell In", "File ", "Input In"))
            ]
            trail = "\n".join(f"  at {line}" for line in where[:3] + where[3:][-3:])
            found.append(f"{output.ename}: {output.evalue}\n{trail}".rstrip())
    committed_text = "".join(out.get("text", "") for out in committed)
    for output in outputs:
        text = output.get("text", "")
        if TRACEBACK in text and TRACEBACK not in committed_text:
            start = text.index(TRACEBACK)
            found.append(f"a traceback on {output.get('name')}:\n" + text[start:][-1500:])
    return found


def describe(path: Path, index: int, code_index: int, run: int, cell, error: str) -> str:
    lines = cell.source.splitlines()
    head = "\n".join(f"    | {line}" for line in lines[:SOURCE_LINES])
    more = (
        f"\n    | ... ({len(lines) - SOURCE_LINES} more lines)" if len(lines) > SOURCE_LINES else ""
    )
    which = "first run" if run == 1 else "second run (the re-run)"
    error = "\n".join(f"    {line}" for line in error.splitlines())
    return (
        f"{path.name} cell {index} (code cell {code_index}, execution {run} of 2: {which}):\n"
        f"{head}{more}\n  error:\n{error}"
    )


@pytest.mark.timeout(NOTEBOOK_BUDGET + STARTUP_TIMEOUT + 60)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_every_cell_runs_twice_in_a_row(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        startup_timeout=STARTUP_TIMEOUT,
        kernel_name=CURRENT_ENV,
        kernel_manager_class=CurrentEnvKernelManager,
        allow_errors=True,  # reported below, with the run and the cell
        record_timing=False,
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    failures: list[str] = []
    deadline = time.monotonic() + NOTEBOOK_BUDGET
    with client.setup_kernel():
        code_cells = [
            (index, cell) for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
        ]
        for code_index, (index, cell) in enumerate(code_cells):
            if skipped(cell):
                continue
            committed = copy.deepcopy(cell.outputs)
            for run in (1, 2):
                if time.monotonic() > deadline:
                    failures.append(
                        f"{path.name}: over its {NOTEBOOK_BUDGET} s budget before cell {index}"
                    )
                    break
                try:
                    client.execute_cell(cell, index)
                except CellTimeoutError:
                    message = f"did not finish within {CELL_TIMEOUT} s"
                    failures.append(describe(path, index, code_index, run, cell, message))
                    break
                except DeadKernelError:
                    failures.append(describe(path, index, code_index, run, cell, "kernel died"))
                    break
                if not may_raise(cell):
                    for error in problems(cell.outputs, committed):
                        failures.append(describe(path, index, code_index, run, cell, error))
            else:
                continue
            break  # the kernel is busy, dead or out of time: later cells prove nothing
    if failures:
        pytest.fail(
            f"{len(failures)} error(s) running each cell of {path.name} twice "
            f"(cell numbers count from 0, markdown cells included):\n\n" + "\n\n".join(failures),
            pytrace=False,
        )
