"""The course as a learner meets it: ``make lab``, a notebook opened in the browser, Run All.

JupyterLab is started by ``make lab`` itself (its command line and the course's settings in
``jupyter/``), headless on a free loopback port with a token, and headless Chromium drives
it: each notebook is opened at ``/lab/tree/notebooks/NAME``, run with Run → Run All Cells,
waited for until the kernel is idle and every code cell has its execution count, and
checked for error outputs. Then it is closed without saving (File → Close and Shut Down
Notebook) and its kernel is gone; the committed ``.ipynb`` is byte for byte unchanged.
(Before Run All, Edit → Clear Outputs of All Cells: the committed execution counts would
otherwise pass for this run's.)

What the test adds to ``make lab``'s command line, and why: ``--no-browser``, the port and
the token; ``JUPYTER_CONFIG_DIR``, ``JUPYTER_DATA_DIR``, ``JUPYTER_RUNTIME_DIR`` and
``IPYTHONDIR`` in a temporary folder (nothing of the developer's is read or written), with
one user setting there, autosave off, so that JupyterLab never writes a notebook; and
checkpoints kept in that folder too, not in ``notebooks/.ipynb_checkpoints``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

ROOT = Path(__file__).parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
STARTUP = 90  # s for make lab to serve
OPEN = 60  # s for a notebook page to load and its kernel to be idle
RUN = 300  # s for Run All Cells in one notebook (nbval allows each notebook 60 s)
SHUTDOWN = 30  # s for the kernel to be gone after the notebook is closed
POLL = 0.5  # s
NEWS = "Would you like to get notified about official Jupyter news?"
SOURCE_LINES = 4

# What the page shows, per cell of the open notebook, in document order.
CELLS_STATE = """
() => {
  const panels = [...document.querySelectorAll('.jp-NotebookPanel')]
    .filter((panel) => !panel.classList.contains('lm-mod-hidden'));
  if (panels.length !== 1) return null;
  const cells = [...panels[0].querySelectorAll('.jp-Notebook .jp-Cell')];
  return cells.map((cell) => ({
    code: cell.classList.contains('jp-CodeCell'),
    prompt: (cell.querySelector('.jp-InputPrompt')?.textContent ?? '').trim(),
    errors: [...cell.querySelectorAll('.jp-OutputArea-output')]
      .filter((output) => output.dataset.mimeType === 'application/vnd.jupyter.error'
        || output.textContent.includes('Traceback (most recent call last)'))
      .map((output) => output.textContent.slice(-1500)),
  }));
}
"""
COUNTED = re.compile(r"^\[\d+\]:$")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Lab:
    url: str
    token: str
    log: Path

    def api(self, path: str, method: str = "GET") -> object:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def kernels(self) -> list[dict]:
        return self.api("/api/kernels")  # type: ignore[return-value]

    def shut_down_everything(self) -> None:
        """What a failed test left running: its sessions and kernels."""
        for session in self.api("/api/sessions"):  # type: ignore[union-attr]
            with contextlib.suppress(urllib.error.URLError):
                self.api(f"/api/sessions/{session['id']}", "DELETE")
        for kernel in self.kernels():
            with contextlib.suppress(urllib.error.URLError):
                self.api(f"/api/kernels/{kernel['id']}", "DELETE")

    def forget_workspaces(self) -> None:
        """A fresh layout for the next page: JupyterLab would reopen what was open before."""
        listing = self.api("/lab/api/workspaces")
        for name in listing["workspaces"]["ids"]:  # type: ignore[index]
            with contextlib.suppress(urllib.error.HTTPError):
                self.api(f"/lab/api/workspaces/{name}", "DELETE")


@pytest.fixture(scope="module")
def lab(browser, make_lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """``make lab`` serving the course on a free port; always stopped afterwards.

    ``browser`` first: without chromium the module skips (fails under CI=true) before
    starting a server for nothing."""
    home = tmp_path_factory.mktemp("jupyterlab")
    settings = home / "config/lab/user-settings/@jupyterlab/docmanager-extension"
    settings.mkdir(parents=True)
    (settings / "plugin.jupyterlab-settings").write_text('{"autosave": false}\n')
    # -o: never reinstall from here, even when pyproject.toml is newer than the stamp.
    with make_lab(
        home,
        startup=STARTUP,
        lab_args=f"--FileCheckpoints.checkpoint_dir={home / 'checkpoints'}",
        make_args=["-o", ".venv/.installed-lab"],
    ) as started:
        yield Lab(started.url, started.token, started.log)


def markers(cell: nbformat.NotebookNode) -> set[str]:
    found = {tag.lower() for tag in cell.metadata.get("tags", [])}
    for line in cell.source.splitlines():
        if line.strip().startswith("#"):
            found.add(line.strip().lstrip("#").strip().lower().replace("_", "-"))
    return found


def may_raise(cell: nbformat.NotebookNode) -> bool:
    return bool(markers(cell) & {"raises-exception", "nbval-raises-exception"})


def head(cell: nbformat.NotebookNode) -> str:
    lines = cell.source.splitlines()
    shown = "\n".join(f"    | {line}" for line in lines[:SOURCE_LINES])
    return shown + ("\n    | ..." if len(lines) > SOURCE_LINES else "")


def open_notebook(page, lab: Lab, name: str) -> None:
    lab.forget_workspaces()
    page.goto(f"{lab.url}/lab/tree/notebooks/{name}?token={lab.token}", timeout=OPEN * 1000)
    page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").first.wait_for(timeout=OPEN * 1000)
    kernel_idle(page).wait_for(timeout=OPEN * 1000)


def kernel_idle(page):
    """The status bar's kernel item, once it says ``Python 3 (ipykernel) | Idle``."""
    return page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\|\s*Idle$"))


def menu(page, top: str, item: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(top)}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


def close_and_shut_down(page, lab: Lab) -> None:
    """File → Close and Shut Down Notebook…, Ok: closed unsaved; then the kernel is gone."""
    menu(page, "File", "Close and Shut Down Notebook…")
    dialog = page.locator(".jp-Dialog")
    dialog.get_by_role("button", name="Ok").click()
    dialog.wait_for(state="detached", timeout=10_000)
    deadline = time.monotonic() + SHUTDOWN
    while lab.kernels():
        assert time.monotonic() < deadline, f"a kernel still runs: {lab.kernels()}"
        time.sleep(POLL)


@pytest.mark.service("chromium")
@pytest.mark.timeout(STARTUP + OPEN + RUN + SHUTDOWN + 60)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.name for path in NOTEBOOKS])
def test_run_all_cells_in_jupyterlab(browser, lab: Lab, path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    before = digest(path)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        open_notebook(page, lab, path.name)
        # The committed execution counts are shown until cleared: clear them, so that the
        # counts waited for below are this run's.
        menu(page, "Edit", "Clear Outputs of All Cells")
        prompts = [shown["prompt"] for shown in page.evaluate(CELLS_STATE) if shown["code"]]
        assert not any(COUNTED.match(prompt) for prompt in prompts), prompts
        menu(page, "Run", "Run All Cells")
        deadline = time.monotonic() + RUN
        settled = 0  # polls in a row that found the run over: twice, not a gap between cells
        while True:
            cells = page.evaluate(CELLS_STATE)
            idle = kernel_idle(page).count() == 1
            if cells is not None and len(cells) == len(notebook.cells):
                pairs = list(zip(notebook.cells, cells, strict=True))
                errors = [
                    (index, cell, shown["errors"])
                    for index, (cell, shown) in enumerate(pairs)
                    if shown["errors"] and not may_raise(cell)
                ]
                waiting = [
                    (index, cell, shown["prompt"])
                    for index, (cell, shown) in enumerate(pairs)
                    if cell.cell_type == "code"
                    and cell.source.strip()
                    and not COUNTED.match(shown["prompt"])
                ]
                queued = any(shown["prompt"] == "[*]:" for shown in cells)
                over = idle and not queued and (errors or not waiting)
                settled = settled + 1 if over else 0
                if settled >= 2:
                    break
            if time.monotonic() > deadline:
                found = "no notebook" if cells is None else f"{len(cells)} cells"
                detail = (
                    f"{found} on the page, {len(notebook.cells)} in the file"
                    if cells is None or len(cells) != len(notebook.cells)
                    else "\n".join(
                        f"  cell {index} shows {prompt!r}:\n{head(cell)}"
                        for index, cell, prompt in waiting[:3]
                    )
                )
                pytest.fail(
                    f"{path.name}: Run All Cells was not over within {RUN} s "
                    f"(kernel idle: {idle}):\n{detail}",
                    pytrace=False,
                )
            time.sleep(POLL)
        if errors:
            report = "\n\n".join(
                f"{path.name} cell {index} (counted from 0, markdown cells included):\n"
                f"{head(cell)}\n  error output:\n"
                + "\n".join(f"    {line}" for line in texts[0].strip().splitlines()[-12:])
                for index, cell, texts in errors
            )
            pytest.fail(
                f"{path.name}: {len(errors)} cell(s) with an error in JupyterLab's Run All "
                f"Cells:\n\n{report}",
                pytrace=False,
            )
        close_and_shut_down(page, lab)
    finally:
        context.close()
        lab.shut_down_everything()
    if digest(path) != before:
        saved = f"Saving file at /notebooks/{path.name}" in lab.log.read_text(errors="replace")
        pytest.fail(
            f"{path.name} changed on disk while JupyterLab had it open; JupyterLab's log "
            + ("shows it saved it" if saved else "shows no save: was it edited meanwhile?"),
            pytrace=False,
        )


@pytest.mark.service("chromium")
@pytest.mark.timeout(STARTUP + OPEN + SHUTDOWN + 60)
def test_jupyterlab_does_not_ask_about_news(browser, lab: Lab) -> None:
    """The course's ``jupyter/settings/overrides.json`` reaches JupyterLab through make lab:
    no "get notified about official Jupyter news?" pop-up, no news fetched."""
    schema = lab.api("/lab/api/settings/@jupyterlab/apputils-extension:notification")
    defaults = {key: value.get("default") for key, value in schema["schema"]["properties"].items()}
    assert defaults["fetchNews"] == "false", (
        "make lab does not pass the course's JupyterLab settings "
        "(--LabApp.app_settings_dir=jupyter/settings)"
    )
    assert defaults["checkForUpdates"] is False
    context = browser.new_context()
    page = context.new_page()
    try:
        open_notebook(page, lab, NOTEBOOKS[0].name)
        # The question is asked as soon as JupyterLab has restored: it would be up by now.
        with contextlib.suppress(PlaywrightTimeout):
            page.get_by_text(NEWS).wait_for(timeout=3000)
        assert page.get_by_text(NEWS).count() == 0, "JupyterLab asked about Jupyter news"
        assert page.locator(".Toastify__toast").all_inner_texts() == []
        close_and_shut_down(page, lab)
    finally:
        context.close()
        lab.shut_down_everything()
