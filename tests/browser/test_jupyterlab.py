"""End to end in a real browser: JupyterLab, a notebook of three states, a killed kernel.

The test starts JupyterLab on loopback with its own config, data, runtime, settings and
IPython folders, opens a notebook in headless Chromium (Debian's, through Playwright), runs
every cell, and checks the plan that ``%flow show`` draws. It then starts a fourth state that
blocks, kills the kernel with SIGKILL while that state runs, lets the server restart the
kernel, runs only ``%load_ext nbflow``, and resumes the interrupted run from the restart
banner. Screenshots go to ``$NBFLOW_TEST_ARTIFACTS`` (default ``tests/browser/artifacts``).
The same plan, kill and Resume run again in Notebook 7 (the ``notebook`` package), which
is built from JupyterLab's parts and is driven the same way.

The widget presenter's markup is named in one place, :class:`Widgets`. Until it lands,
``NBFLOW_BROWSER_ACCEPT_TEXT=1`` lets the text output stand in for it, so the plumbing can
be exercised; without it the test requires the widgets.

Design notes:

- JupyterLab is driven through ``window.jupyterapp`` (``--LabApp.expose_app_in_browser``,
  the hook JupyterLab's own UI tests use): commands such as ``notebook:run-all-cells``
  and the notebook's models, instead of keyboard shortcuts and menus that change with
  versions and focus.
- A cell is known to have finished when the execution count that the test cleared before
  running it is set again and the cell is no longer running; comparing counts would not
  work after a restart, where counting starts again at 1.
- The kernel's process is found through the connection file the server gave it
  (``kernel-<id>.json`` in the private runtime folder), so only this test's kernel is
  killed.
- The blocking state waits while a ``hold`` file exists instead of sleeping: resume runs
  the cut-off state again, and must then finish at once.
- Everything is bounded by one deadline so that the test ends within three minutes.
- The fixtures are in this module, not in a ``conftest.py``: ``tests/`` is not a package,
  and a second ``conftest`` module would shadow the one that ``tests/kernel`` imports
  (``from conftest import KernelFactory``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOTEBOOK = "three_states.ipynb"
STATES = ("load", "clean", "train")
TEST_BUDGET_S = 170.0
"""Everything, from starting JupyterLab to stopping it, must fit in this."""

ACCEPT_TEXT = os.environ.get("NBFLOW_BROWSER_ACCEPT_TEXT") == "1"
"""Accept the text presenter's output where the widgets are expected (until they land)."""


def _missing_requirement() -> str | None:
    if not (CHROMIUM.exists() and os.access(CHROMIUM, os.X_OK)):
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    for module, package in (("playwright", "playwright"), ("jupyterlab", "jupyterlab")):
        if importlib.util.find_spec(module) is None:
            return f"the {package} package is not installed (pip install {package})"
    return None


_MISSING = _missing_requirement()
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(_MISSING is not None, reason=f"browser test: {_MISSING}"),
]


# -- what nbflow shows: the only place the test names the presenter's markup -------------------


class Widgets:
    """Selectors of the widget presenter (ipywidgets 8, standard widgets only)."""

    STATE = ".nbflow-state"
    """Each state of the ``%flow show`` DAG: ``<g class="nbflow-state" data-state=…
    data-status=…>`` inside the SVG of an ``ipywidgets.HTML``."""
    BANNER = ".widget-hbox"
    """The restart banner: an ``HBox`` holding the three buttons below."""
    BANNER_BUTTONS = ("Resume", "Restore variables", "Dismiss")
    RESUME = "Resume"

    @staticmethod
    def state(state_id: str, status: str | None = None) -> str:
        """The DAG node of ``state_id`` (with ``status``, when given)."""
        selector = f'{Widgets.STATE}[data-state="{state_id}"]'
        return selector if status is None else f'{selector}[data-status="{status}"]'

    @staticmethod
    def button(scope: Page | Locator, label: str) -> Locator:
        """The ``ipywidgets.Button`` labelled ``label`` in ``scope``. Matched on its text,
        not its accessible name, which includes the glyph of an icon (``icon="play"``)."""
        return scope.locator("button", has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))


class Text:
    """The text presenter's output, accepted with ``NBFLOW_BROWSER_ACCEPT_TEXT=1``."""

    BANNER = "was interrupted"
    RESUME_CELL = "%flow resume"

    @staticmethod
    def state_line(state_id: str, status: str) -> re.Pattern[str]:
        """A ``%flow show`` line such as ``  ✓ load  completed``."""
        mark = {
            "completed": "✓",
            "cached": "≡",
            "stale": "!",
            "running": "▶",
            "failed": "✗",
            "interrupted": "‖",
        }[status]
        return re.compile(rf"^\s*{re.escape(mark)} {re.escape(state_id)}\s+{status}\b", re.M)


def runs_line_says_completed(output: str, run_id: str) -> bool:
    """Whether the ``%flow runs`` output (text, or a widget's visible text) shows ``run_id``
    as completed: the line naming its first 8 characters also says ``completed``."""
    return any(run_id[:8] in line and "completed" in line for line in output.splitlines())


# -- timing ----------------------------------------------------------------------------------

T = TypeVar("T")


class Deadline:
    """One budget for the whole test; every wait takes what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()

    def wait_for(
        self,
        what: str,
        probe: Callable[[], T | None],
        timeout: float,
        interval: float = 0.25,
        describe: Callable[[], str] | None = None,
    ) -> T:
        """Call ``probe`` until it returns something other than None or False."""
        end = time.monotonic() + min(timeout, max(self.remaining(), 0.0))
        while True:
            value = probe()
            if value is not None and value is not False:
                return value
            if time.monotonic() >= end:
                detail = f"; last seen: {describe()}" if describe is not None else ""
                limited = " (the test's overall budget ran out)" if self.remaining() <= 0 else ""
                raise AssertionError(
                    f"timed out after {timeout:.0f} s waiting for {what}{limited}{detail}"
                )
            time.sleep(interval)


# -- the JupyterLab server -------------------------------------------------------------------


@dataclass
class LabServer:
    """A JupyterLab started by the test, with its private folders."""

    url: str
    token: str
    root: Path
    runtime: Path
    log: Path
    process: subprocess.Popen[bytes]
    deadline: Deadline
    app: str = "lab"
    """``lab`` (JupyterLab) or ``notebook`` (Notebook 7)."""

    def notebook_url(self, path: str) -> str:
        """Where the app opens the notebook at ``path``."""
        where = "lab/tree" if self.app == "lab" else "notebooks"
        return f"{self.url}/{where}/{path}?token={self.token}"

    def api(self, method: str, path: str, timeout: float = 10.0) -> Any:
        """Call the REST API; the decoded JSON answer (None when empty)."""
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
            data=b"" if method == "POST" else None,
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
        return json.loads(body) if body else None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "\n".join(text.splitlines()[-lines:])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def lab_settings(settings: Path) -> None:
    """User settings that keep JupyterLab quiet and every cell in the DOM."""
    files = {
        # No news, no update check, no toast asking about either.
        "@jupyterlab/apputils-extension/notification": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
        # Without windowing every cell stays in the DOM, wherever it is scrolled.
        "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
        "@jupyterlab/extensionmanager-extension/plugin": {"enabled": False},
    }
    for name, values in files.items():
        path = settings / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def processes_mentioning(needle: str) -> list[int]:
    """Ids of processes whose command line contains ``needle`` (Linux ``/proc``)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle.encode() in cmdline:
            found.append(int(entry.name))
    return found


def stop_server(server: LabServer) -> None:
    """Shut the kernels down, stop the server, and kill whatever of theirs is left."""
    with contextlib.suppress(Exception):
        for kernel in server.api("GET", "/api/kernels", timeout=5):
            with contextlib.suppress(Exception):
                server.api("DELETE", f"/api/kernels/{kernel['id']}", timeout=10)
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)
    # Kernels run in sessions of their own; theirs are the processes that name the
    # private runtime folder (their connection files are in it).
    for pid in processes_mentioning(str(server.runtime)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def deadline() -> Deadline:
    return Deadline(TEST_BUDGET_S)


@pytest.fixture
def lab_server(tmp_path: Path, deadline: Deadline) -> Iterator[LabServer]:
    """JupyterLab on 127.0.0.1 with a random token; nothing from the machine leaks in."""
    with serve(tmp_path, deadline, "lab") as server:
        yield server


@pytest.fixture
def notebook7_server(tmp_path: Path, deadline: Deadline) -> Iterator[LabServer]:
    """Notebook 7 (the ``notebook`` package) on 127.0.0.1, set up as JupyterLab is."""
    with serve(tmp_path, deadline, "notebook") as server:
        yield server


@contextlib.contextmanager
def serve(tmp_path: Path, deadline: Deadline, app: str) -> Iterator[LabServer]:
    """JupyterLab (``lab``) or Notebook 7 (``notebook``), started and stopped."""
    root = tmp_path / "notebooks"
    folders = {
        name: tmp_path / name for name in ("config", "data", "runtime", "settings", "ws", "ipy")
    }
    for folder in (root, *folders.values()):
        folder.mkdir()
    lab_settings(folders["settings"])
    # NBFLOW_TEXT=1 is passed on (the kernel then uses the text presenter); the history
    # must be beside the notebook, so NBFLOW_HOME is not.
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("JUPYTER", "JPY_", "IPYTHON", "NBFLOW_HOME"))
    }
    env.update(
        JUPYTER_CONFIG_DIR=str(folders["config"]),
        JUPYTER_DATA_DIR=str(folders["data"]),
        JUPYTER_RUNTIME_DIR=str(folders["runtime"]),
        JUPYTERLAB_SETTINGS_DIR=str(folders["settings"]),
        JUPYTERLAB_WORKSPACES_DIR=str(folders["ws"]),
        JUPYTER_PLATFORM_DIRS="1",
        IPYTHONDIR=str(folders["ipy"]),
        NBFLOW_TEST_SLOW="0",
        PYTHONUNBUFFERED="1",
    )
    port, token = free_port(), secrets.token_hex(24)
    command = [
        sys.executable,
        "-m",
        "jupyterlab" if app == "lab" else "notebook",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.terminals_enabled=False",
    ]
    if app == "lab":
        command += [
            # Nothing goes out: no news feed, no update check, no extension manager on PyPI.
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            # window.jupyterapp, to drive JupyterLab through its commands.
            "--LabApp.expose_app_in_browser=True",
        ]
    else:
        command += ["--JupyterNotebookApp.expose_app_in_browser=True"]
    if os.geteuid() == 0:  # CI and containers run as root, which the server refuses
        command.append("--ServerApp.allow_root=True")
    log = tmp_path / "jupyterlab.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = LabServer(
        f"http://127.0.0.1:{port}", token, root, folders["runtime"], log, process, deadline, app
    )
    try:

        def answers() -> bool:
            if process.poll() is not None:
                raise AssertionError(
                    f"JupyterLab exited with {process.returncode}:\n{server.log_tail()}"
                )
            try:
                return server.api("GET", "/api/status", timeout=2) is not None
            except (OSError, urllib.error.URLError, ValueError):
                return False

        deadline.wait_for("JupyterLab to answer /api/status", answers, 60, 0.2, server.log_tail)
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def lab_page(tmp_path: Path) -> Iterator[Page]:
    """A page of headless Debian Chromium with a fresh profile."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
            device_scale_factor=1,
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(30_000)
            yield page
        finally:
            context.close()


@pytest.fixture
def artifacts() -> Path:
    folder = Path(os.environ.get("NBFLOW_TEST_ARTIFACTS") or Path(__file__).parent / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    for name in (
        "dag.png",
        "banner.png",
        "resumed.png",
        "timeline.png",
        "stale.png",
        "cached.png",
        "notebook7-dag.png",
        "notebook7-banner.png",
        "failure.png",
        "failure.txt",
        "large_plan.png",
        "large_timeline.png",
    ):
        (folder / name).unlink(missing_ok=True)
    return folder


# -- the notebook in the page ----------------------------------------------------------------

_FIND_PANEL = """
    const app = window.jupyterapp;
    if (!app) { return null; }
    let panel = null;
    for (const widget of app.shell.widgets('main')) {
        if (widget.context && widget.context.path === arg.path) { panel = widget; break; }
    }
    if (!panel) { return null; }
"""

_STATE_JS = (
    "(arg) => {"
    + _FIND_PANEL
    + """
    const session = panel.sessionContext.session;
    const kernel = session ? session.kernel : null;
    const dialogs = Array.from(document.querySelectorAll('.jp-Dialog'));
    return {
        kernel_id: kernel ? kernel.id : null,
        kernel_status: kernel ? kernel.status : null,
        connection: kernel ? kernel.connectionStatus : null,
        dialogs: dialogs.map(d => d.innerText),
        cells: panel.content.widgets.map(cell => {
            const model = cell.model;
            const code = model.type === 'code';
            const prompt = cell.node.querySelector('.jp-InputPrompt');
            return {
                type: model.type,
                source: model.sharedModel.getSource(),
                count: code ? model.executionCount : null,
                running: code && (model.executionState === 'running'
                    || (prompt !== null && prompt.textContent.includes('*'))),
                outputs: code ? model.outputs.toJSON() : [],
            };
        }),
    };
}"""
)

_RUN_JS = (
    "(arg) => {"
    + _FIND_PANEL
    + """
    const notebook = panel.content;
    app.shell.activateById(panel.id);
    for (const index of arg.cells) {
        const model = notebook.widgets[index].model;
        model.executionCount = null;
        model.outputs.clear();
    }
    if (arg.all) {
        void app.commands.execute('notebook:run-all-cells');
    } else {
        notebook.activeCellIndex = arg.cells[0];
        notebook.deselectAll();
        void app.commands.execute('notebook:run-cell');
    }
    return true;
}"""
)

_APPEND_JS = (
    "(arg) => {"
    + _FIND_PANEL
    + """
    const shared = panel.content.model.sharedModel;
    shared.insertCell(shared.cells.length, {cell_type: 'code', source: arg.source});
    return panel.content.widgets.length - 1;
}"""
)


_SAVE_AND_SHUT_DOWN_JS = (
    "async (arg) => {"
    + _FIND_PANEL
    + """
    await panel.context.save();
    await panel.sessionContext.shutdown();
    return true;
}"""
)


def output_text(outputs: list[dict[str, Any]]) -> str:
    """What a cell's outputs say, as text."""
    parts = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            text = output.get("text", "")
            parts.append(text if isinstance(text, str) else "".join(text))
        elif kind == "error":
            parts.append(f"{output.get('ename')}: {output.get('evalue')}")
        else:
            plain = output.get("data", {}).get("text/plain", "")
            parts.append(plain if isinstance(plain, str) else "".join(plain))
    return "\n".join(parts)


class Notebook:
    """The notebook open in JupyterLab, driven through ``window.jupyterapp``."""

    def __init__(self, page: Page, server: LabServer, path: str) -> None:
        self.page, self.server, self.path = page, server, path
        self.deadline = server.deadline

    def state(self) -> dict[str, Any] | None:
        state: dict[str, Any] | None = self.page.evaluate(_STATE_JS, {"path": self.path})
        return state

    def describe(self) -> str:
        state = self.state()
        if state is None:
            return "notebook panel not open (yet)"
        cells = [
            f"[{i}] count={c['count']} running={c['running']}: {output_text(c['outputs'])[:300]!r}"
            for i, c in enumerate(state["cells"])
        ]
        return (
            f"kernel {state['kernel_status']} ({state['connection']}), "
            f"dialogs {state['dialogs']}\n" + "\n".join(cells)
        )

    def cell(self, index: int) -> Locator:
        return self.page.locator(".jp-NotebookPanel .jp-Notebook .jp-Cell").nth(index)

    def output(self, index: int) -> Locator:
        return self.cell(index).locator(".jp-Cell-outputArea")

    def open(self) -> None:
        self.page.goto(self.server.notebook_url(self.path))
        self.wait_kernel_idle(90)

    def wait_kernel_idle(self, timeout: float, not_kernel_pid: int | None = None) -> None:
        """Wait until the notebook's kernel is connected and idle (dismissing the
        "Kernel Restarting" notice); with ``not_kernel_pid``, a kernel other than that."""

        since = time.monotonic()
        asked_restart: list[bool] = []

        def idle() -> bool:
            state = self.state()
            if state is None:
                return False
            if state["dialogs"]:
                self.dismiss_dialogs()
                return False
            if not_kernel_pid is not None:
                pids = self.kernel_pids(state["kernel_id"])
                if not pids and time.monotonic() - since > 20 and not asked_restart:
                    # The server restarts a dead kernel by itself within seconds; should it
                    # not have, ask for a restart once.
                    asked_restart.append(True)
                    with contextlib.suppress(OSError, urllib.error.URLError):
                        self.server.api("POST", f"/api/kernels/{state['kernel_id']}/restart")
                if not pids or not_kernel_pid in pids:
                    return False
            return bool(state["kernel_status"] == "idle" and state["connection"] == "connected")

        self.deadline.wait_for("the kernel to be idle", idle, timeout, 0.3, self.describe)

    def dismiss_dialogs(self) -> None:
        accept = self.page.locator(".jp-Dialog .jp-mod-accept")
        with contextlib.suppress(Exception):
            if accept.count():
                accept.first.click(timeout=2000)

    def kernel_id(self) -> str:
        state = self.state()
        assert state is not None, "the notebook is not open"
        kernel_id: str = state["kernel_id"]
        return kernel_id

    def kernel_pids(self, kernel_id: str) -> list[int]:
        return processes_mentioning(f"kernel-{kernel_id}.json")

    def run(self, cells: list[int], timeout: float, *, all_cells: bool = False) -> None:
        """Run ``cells`` (or every cell) and wait until each has finished."""
        self.page.evaluate(_RUN_JS, {"path": self.path, "cells": cells, "all": all_cells})
        self.wait_finished(cells, timeout)

    def start(self, index: int) -> None:
        """Start one cell without waiting for it."""
        self.page.evaluate(_RUN_JS, {"path": self.path, "cells": [index], "all": False})

    def wait_finished(self, cells: list[int], timeout: float) -> None:
        def finished() -> bool:
            state = self.state()
            if state is None:
                return False
            wanted = [state["cells"][i] for i in cells]
            if any(c["running"] for c in wanted) or state["kernel_status"] != "idle":
                return False
            # Run All stops at an error: the cells after it never get a count.
            failed = any(o.get("output_type") == "error" for c in wanted for o in c["outputs"])
            return failed or all(c["count"] is not None for c in wanted)

        self.deadline.wait_for(f"cells {cells} to finish", finished, timeout, 0.3, self.describe)
        errors = self.errors(cells)
        assert not errors, f"cells raised errors: {errors}\n{self.describe()}"

    def errors(self, cells: list[int]) -> dict[int, str]:
        state = self.state()
        assert state is not None
        found = {}
        for index in cells:
            outputs = state["cells"][index]["outputs"]
            failed = [o for o in outputs if o.get("output_type") == "error"]
            if failed:
                found[index] = output_text(failed)
        return found

    def text_of(self, index: int) -> str:
        """The outputs of cell ``index`` as saved in the model (what the kernel sent)."""
        state = self.state()
        assert state is not None
        return output_text(state["cells"][index]["outputs"])

    def shown_text(self, index: int) -> str:
        """The visible text of cell ``index``'s output area (rendered widgets included)."""
        return self.output(index).inner_text()

    def save_and_shut_down(self) -> None:
        """Save the notebook and shut its kernel down, as closing JupyterLab would."""
        self.page.evaluate(_SAVE_AND_SHUT_DOWN_JS, {"path": self.path})

    def append(self, source: str) -> int:
        index: int = self.page.evaluate(_APPEND_JS, {"path": self.path, "source": source})
        return index

    def screenshot(self, index: int, path: Path, top: bool = False) -> None:
        """A screenshot of the page with the output of cell ``index`` in view (``top``:
        its top at the top of the page, for outputs taller than the page)."""
        with contextlib.suppress(Exception):
            if top:
                self.output(index).evaluate("e => e.scrollIntoView({block: 'start'})")
            else:
                self.output(index).scroll_into_view_if_needed(timeout=5000)
        self.page.wait_for_timeout(300)  # let the scroll and the layout settle
        self.page.screenshot(path=str(path))


def notebook_cells() -> list[str]:
    """The sources of the notebook's cells."""
    return [
        "%load_ext nbflow",
        "%%state load\nrows = list(range(10))",
        "%%state clean --after load\nrows = [r for r in rows if r % 2 == 0]",
        "%%state train --after clean\nimport time\n"
        "time.sleep(float(__import__('os').environ.get('NBFLOW_TEST_SLOW', '0')))\n"
        "model = sum(rows)",
        "%flow show",
    ]


def write_notebook(root: Path) -> None:
    import nbformat

    cells = notebook_cells()
    new_notebook, new_cell = nbformat.v4.new_notebook, nbformat.v4.new_code_cell
    notebook = new_notebook(  # type: ignore[no-untyped-call]
        cells=[new_cell(source) for source in cells],  # type: ignore[no-untyped-call]
        metadata={
            "kernelspec": {
                "name": "python3",
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
            },
            "language_info": {"name": "python"},
        },
    )
    nbformat.validate(notebook)
    nbformat.write(notebook, str(root / NOTEBOOK))  # type: ignore[no-untyped-call]


SLOW_STATE = """%%state slow --after train
import os, time
open('slow.started', 'w').close()
held_until = time.monotonic() + 120
while os.path.exists('hold') and time.monotonic() < held_until:
    time.sleep(0.1)
slow_done = True"""
"""A state that blocks while ``hold`` exists: killed the first time, instant on resume."""


BRANCH_STATE = """%%state {name} --after train
import os, time
open('{name}.started', 'w').close()
{name}_until = time.monotonic() + 120  # a name of its own: the branches must not conflict
while os.path.exists('hold2') and time.monotonic() < {name}_until:
    time.sleep(0.05)
{name}_value = 1"""
"""A branch that waits while ``hold2`` exists: two of them run at once."""


def newest_run(root: Path) -> tuple[str, str] | None:
    """(run id, status) of the newest run of the notebook, from nbflow's own database."""
    import sqlite3

    database = root / ".nbflow" / "nbflow.db"
    if not database.exists():
        return None
    connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        row = connection.execute(
            "SELECT run_id, status FROM runs WHERE flow_id = ? ORDER BY started_us DESC LIMIT 1",
            (NOTEBOOK,),
        ).fetchone()
    finally:
        connection.close()
    return (str(row[0]), str(row[1])) if row else None


@contextlib.contextmanager
def debug_on_failure(page: Page, notebook: Notebook, artifacts: Path) -> Iterator[None]:
    """On failure: a screenshot, the page's text, the notebook's state and the server log."""
    try:
        yield
    except BaseException:
        report = [f"url: {page.url}"]
        with contextlib.suppress(Exception):
            page.screenshot(path=str(artifacts / "failure.png"))
            report.append(f"screenshot: {artifacts / 'failure.png'}")
        with contextlib.suppress(Exception):
            report.append("--- notebook ---\n" + notebook.describe())
        with contextlib.suppress(Exception):
            report.append("--- page text ---\n" + page.inner_text("body", timeout=5000))
        report.append("--- server log ---\n" + notebook.server.log_tail())
        text = "\n".join(report)
        (artifacts / "failure.txt").write_text(text)
        print(text)
        raise


# -- the checks ------------------------------------------------------------------------------


SHOWN_STATUS = """node => {
    const marks = [...node.querySelectorAll('.nbflow-mark')];
    const shown = marks.find(mark => getComputedStyle(mark).display !== 'none');
    return shown ? shown.getAttribute('class').split('nbflow-mark-')[1]
                 : node.getAttribute('data-status');
}"""
"""The status a node shows: in a live DAG, the mark its style sheet left visible (what a
person sees); in a finished picture, its ``data-status``."""


def dag_statuses(notebook: Notebook, index: int) -> dict[str, str]:
    """state -> the status shown by the DAG in the output of cell ``index``."""
    nodes = notebook.output(index).locator(Widgets.STATE)
    found: dict[str, str] = {}
    for i in range(nodes.count()):
        node = nodes.nth(i)
        found[node.get_attribute("data-state") or "?"] = str(node.evaluate(SHOWN_STATUS))
    return found


WIDGET_GRACE_S = 8.0
"""How long after the text fallback arrived a widget may still take to render."""


def widget_or_text(
    deadline: Deadline,
    what: str,
    widget_shown: Callable[[], bool],
    text_shown: Callable[[], str | None],
    describe: Callable[[], str],
) -> str:
    """Wait until ``what`` is shown as a widget (``"widget"``) or, with
    ``NBFLOW_BROWSER_ACCEPT_TEXT=1``, only as text (``"text"``).

    A widget's output carries a text/plain fallback that arrives before the widget
    renders, so text alone counts only after :data:`WIDGET_GRACE_S`; without the
    environment variable it then fails, saying the widgets are missing."""
    text_since: list[float] = []

    def shown() -> str | None:
        if widget_shown():
            return "widget"
        text = text_shown()
        if text is None:
            return None
        text_since.append(time.monotonic())
        if time.monotonic() - text_since[0] < WIDGET_GRACE_S:
            return None
        if ACCEPT_TEXT:
            return "text"
        raise AssertionError(f"WAITING FOR WIDGETS: {what} is shown as text only:\n{text}")

    return deadline.wait_for(what, shown, 30, 0.3, describe)


def expect_dag(notebook: Notebook, index: int, expected: dict[str, str]) -> str:
    """Wait until the DAG in cell ``index`` shows ``expected``; ``widget`` or ``text``."""

    def widget_shown() -> bool:
        statuses = dag_statuses(notebook, index)
        return all(statuses.get(s) == status for s, status in expected.items())

    def text_shown() -> str | None:
        text = notebook.text_of(index)
        lines = [Text.state_line(s, status) for s, status in expected.items()]
        return text if all(line.search(text) for line in lines) else None

    def describe() -> str:
        return f"DAG nodes {dag_statuses(notebook, index)}, text {notebook.text_of(index)!r}"

    mode = widget_or_text(
        notebook.deadline,
        f"the plan (widget DAG: {Widgets.STATE} nodes with data-status)",
        widget_shown,
        text_shown,
        describe,
    )
    # The final assertion, on what a person sees.
    if mode == "widget":
        for state_id, status in expected.items():
            node = notebook.output(index).locator(Widgets.state(state_id, status))
            assert node.count() == 1, f"{state_id} is not shown as {status}"
            assert node.is_visible(), f"the DAG node of {state_id} is not visible"
    return mode


def expect_saved_picture(notebook: Notebook, index: int, selector: str, expected: int) -> None:
    """Wait until the saved output of cell ``index`` shows ``expected`` elements matching
    ``selector``, and no broken widget."""

    def shown() -> bool:
        return bool(notebook.output(index).locator(selector).count() == expected)

    notebook.deadline.wait_for(
        f"the saved picture of cell {index} to show",
        shown,
        30,
        describe=lambda: notebook.shown_text(index),
    )
    text = notebook.shown_text(index)
    assert "Error displaying widget" not in text, text
    assert "Loading widget" not in text, text


def banner_widget(notebook: Notebook, index: int) -> Locator:
    resume = Widgets.button(notebook.page, Widgets.RESUME)
    return notebook.output(index).locator(Widgets.BANNER).filter(has=resume)


def expect_banner(notebook: Notebook, index: int) -> str:
    """Wait for the restart banner in cell ``index``; ``widget`` or ``text``."""

    def text_shown() -> str | None:
        text = notebook.text_of(index)
        return text if Text.BANNER in text else None

    mode = widget_or_text(
        notebook.deadline,
        f"the restart banner (an HBox with buttons {Widgets.BANNER_BUTTONS})",
        lambda: banner_widget(notebook, index).count() > 0,
        text_shown,
        lambda: repr(notebook.text_of(index)),
    )
    if mode == "widget":
        banner = banner_widget(notebook, index)
        assert banner.count() == 1, "one restart banner"
        for label in Widgets.BANNER_BUTTONS:
            button = Widgets.button(banner, label)
            assert button.count() == 1, f"the banner has a {label!r} button"
            assert button.is_visible(), f"the {label!r} button is visible"
            assert button.is_enabled(), f"the {label!r} button can be clicked"
    return mode


def test_run_all_then_kill_the_kernel_and_resume_from_the_banner(
    lab_server: LabServer, lab_page: Page, artifacts: Path, deadline: Deadline
) -> None:
    started = time.monotonic()
    write_notebook(lab_server.root)
    notebook = Notebook(lab_page, lab_server, NOTEBOOK)
    with debug_on_failure(lab_page, notebook, artifacts):
        # Part 1: run every cell; the plan shows load, clean and train completed.
        notebook.open()
        notebook.run([0, 1, 2, 3, 4], 60, all_cells=True)
        dag_mode = expect_dag(notebook, 4, dict.fromkeys(STATES, "completed"))
        notebook.screenshot(4, artifacts / "dag.png")

        # Part 2: a fourth state blocks; the kernel is killed inside it.
        (lab_server.root / "hold").touch()
        slow = notebook.append(SLOW_STATE)
        notebook.start(slow)
        deadline.wait_for(
            "the slow state to start",
            lambda: (lab_server.root / "slow.started").exists(),
            30,
            describe=notebook.describe,
        )
        interrupted = newest_run(lab_server.root)
        assert interrupted is not None, "the slow state's run is recorded"
        assert interrupted[1] == "running", interrupted
        kernel_id = notebook.kernel_id()
        pids = notebook.kernel_pids(kernel_id)
        assert len(pids) == 1, f"one process for kernel {kernel_id}: {pids}"
        os.kill(pids[0], signal.SIGKILL)
        (lab_server.root / "hold").unlink()
        (lab_server.root / "slow.started").unlink()
        # The server restarts a dead kernel by itself; JupyterLab says so in a dialog.
        notebook.wait_kernel_idle(45, not_kernel_pid=pids[0])
        assert newest_run(lab_server.root) == interrupted, "the run stays interrupted"

        # After the restart: only %load_ext nbflow, which shows the banner.
        notebook.run([0], 30)
        banner_mode = expect_banner(notebook, 0)
        notebook.screenshot(0, artifacts / "banner.png")

        if banner_mode == "widget":
            Widgets.button(banner_widget(notebook, 0), Widgets.RESUME).click()
        else:
            notebook.run([notebook.append(Text.RESUME_CELL)], 30)
        run_id = interrupted[0]
        deadline.wait_for(
            "the resumed run to complete",
            lambda: newest_run(lab_server.root) == (run_id, "completed"),
            30,
            describe=lambda: f"newest run {newest_run(lab_server.root)}; {notebook.describe()}",
        )
        assert (lab_server.root / "slow.started").exists(), "resume ran the cut-off state again"

        runs = notebook.append("%flow runs")
        check = notebook.append("print('model =', model, 'slow_done =', slow_done)")
        notebook.run([runs], 30)
        notebook.run([check], 30)
        assert "model = 20 slow_done = True" in notebook.text_of(check), notebook.text_of(check)
        deadline.wait_for(
            "%flow runs to show the resumed run completed",
            lambda: runs_line_says_completed(notebook.shown_text(runs), run_id),
            15,
            describe=lambda: notebook.shown_text(runs),
        )
        notebook.screenshot(check, artifacts / "resumed.png")

        # The resumed run's timeline: the interrupted attempt and the one that completed.
        timeline = notebook.append(f"%flow timeline {run_id}")
        notebook.run([timeline], 30)
        if dag_mode == "widget":
            bars = notebook.output(timeline).locator("rect.nbflow-attempt")
            deadline.wait_for(
                "the timeline to draw both attempts of the slow state",
                lambda: bars.count() == 2,
                15,
                describe=lambda: notebook.shown_text(timeline),
            )
            outcomes = {bars.nth(i).get_attribute("data-outcome") for i in range(2)}
            assert outcomes == {"interrupted", "completed"}, outcomes
        notebook.screenshot(timeline, artifacts / "timeline.png")

        # Part 4: an edit of clean makes it, and every state after it, stale in the DAG;
        # the next run executes exactly those, and serves load from the cache. This
        # kernel has declared only slow, so the plan is declared again, clean edited.
        sources = notebook_cells()
        cells = [
            "%flow mode declare",
            sources[1],
            sources[2].replace("% 2 == 0", "% 3 == 0"),
            sources[3],
            SLOW_STATE,
            "%flow show",
        ]
        indexes = [notebook.append(source) for source in cells]
        for index in indexes:
            notebook.run([index], 30)
        show = indexes[-1]
        stale = {"load": "completed", "clean": "stale", "train": "stale", "slow": "stale"}
        expect_dag(notebook, show, stale)
        notebook.screenshot(show, artifacts / "stale.png")
        rerun = notebook.append("%flow run")
        notebook.run([rerun], 60)
        said = notebook.text_of(rerun)
        assert "load cached from run" in said, said
        after = notebook.append("%flow show")
        notebook.run([after], 30)
        fresh = {"load": "cached", "clean": "completed", "train": "completed", "slow": "cached"}
        expect_dag(notebook, after, fresh)
        check = notebook.append("print('model =', model)")
        notebook.run([check], 30)
        assert "model = 18" in notebook.text_of(check), notebook.text_of(check)
        notebook.screenshot(after, artifacts / "cached.png")

        # Part 5: two branches with no path between them run at once in worker
        # processes; the live DAG shows both running.
        (lab_server.root / "hold2").touch()
        for source in (BRANCH_STATE.format(name="left"), BRANCH_STATE.format(name="right")):
            notebook.run([notebook.append(source)], 30)
        parallel = notebook.append("%flow run --parallel 2 left right")
        notebook.start(parallel)
        deadline.wait_for(
            "both branches to start",
            lambda: all((lab_server.root / f"{n}.started").exists() for n in ("left", "right")),
            60,
            describe=notebook.describe,
        )
        if dag_mode == "widget":
            both = {"left": "running", "right": "running"}
            deadline.wait_for(
                "the live DAG to show two running states at once",
                lambda: all(dag_statuses(notebook, parallel).get(s) == v for s, v in both.items()),
                30,
                describe=lambda: f"live DAG {dag_statuses(notebook, parallel)}",
            )
        notebook.screenshot(parallel, artifacts / "parallel.png")
        (lab_server.root / "hold2").unlink()
        notebook.wait_finished([parallel], 60)
        check = notebook.append("print('branches', left_value + right_value, model)")
        notebook.run([check], 30)
        assert "branches 2 18" in notebook.text_of(check), notebook.text_of(check)

        # Part 6: saved, its kernel shut down and the page opened again, the notebook
        # still shows the DAG and the timeline (pictures, not widgets): no broken widget.
        notebook.save_and_shut_down()
        notebook.open()
        pictures = ((4, Widgets.STATE, 3), (timeline, "rect.nbflow-attempt", 2))
        for index, selector, expected in pictures:
            expect_saved_picture(notebook, index, selector, expected)
        notebook.screenshot(4, artifacts / "reopened.png")

    took = time.monotonic() - started
    total = TEST_BUDGET_S - deadline.remaining()
    print(
        f"browser test: DAG as {dag_mode}, banner as {banner_mode}; "
        f"{took:.1f} s in the page, {total:.1f} s with the server start"
    )
    assert total < TEST_BUDGET_S


def test_notebook_7_runs_the_plan_and_resumes_from_the_banner(
    notebook7_server: LabServer, lab_page: Page, artifacts: Path, deadline: Deadline
) -> None:
    """The same notebook in Notebook 7: Run All draws the DAG, a kernel killed inside a
    state leaves the banner, and its Resume button completes the run."""
    server = notebook7_server
    write_notebook(server.root)
    notebook = Notebook(lab_page, server, NOTEBOOK)
    with debug_on_failure(lab_page, notebook, artifacts):
        notebook.open()
        notebook.run([0, 1, 2, 3, 4], 60, all_cells=True)
        expect_dag(notebook, 4, dict.fromkeys(STATES, "completed"))
        notebook.screenshot(4, artifacts / "notebook7-dag.png")
        (server.root / "hold").touch()
        slow = notebook.append(SLOW_STATE)
        notebook.start(slow)
        deadline.wait_for(
            "the slow state to start",
            lambda: (server.root / "slow.started").exists(),
            30,
            describe=notebook.describe,
        )
        interrupted = newest_run(server.root)
        assert interrupted is not None, "the slow state's run is recorded"
        pids = notebook.kernel_pids(notebook.kernel_id())
        assert len(pids) == 1, pids
        os.kill(pids[0], signal.SIGKILL)
        (server.root / "hold").unlink()
        notebook.wait_kernel_idle(45, not_kernel_pid=pids[0])
        notebook.run([0], 30)
        banner_mode = expect_banner(notebook, 0)
        notebook.screenshot(0, artifacts / "notebook7-banner.png")
        if banner_mode == "widget":
            Widgets.button(banner_widget(notebook, 0), Widgets.RESUME).click()
        else:
            notebook.run([notebook.append(Text.RESUME_CELL)], 30)
        run_id = interrupted[0]
        deadline.wait_for(
            "the resumed run to complete",
            lambda: newest_run(server.root) == (run_id, "completed"),
            30,
            describe=lambda: f"newest run {newest_run(server.root)}; {notebook.describe()}",
        )
        check = notebook.append("print('model =', model, 'slow_done =', slow_done)")
        notebook.run([check], 30)
        assert "model = 20 slow_done = True" in notebook.text_of(check), notebook.text_of(check)


def large_notebook_cells() -> list[str]:
    """A plan of 292 states (a root, ten regions of 29 months, a report) and a run of
    1,000 attempts (250 chained states that each fail three times before they succeed)."""
    # Minimal tracebacks: IPython takes about 70 ms to render each of the 750 failures in
    # full, and what is tested here is the pictures, not the tracebacks.
    cells = [
        "%load_ext nbflow",
        "%xmode Minimal",
        "%flow mode declare",
        "%%state prepare\nbase = 1",
    ]
    for region in range(10):
        for month in range(29):
            after = f"r{region}.m{month - 1}" if month else "prepare"
            cells.append(f"%%state r{region}.m{month} --after {after}\nv_{region}_{month} = 1")
    report = ",".join(f"r{region}.m28" for region in range(10))
    cells += [f"%%state report --after {report}\ndone = True", "%flow run report", "%flow show"]
    for i in range(250):
        after = f" --after t{i - 1}" if i else ""
        cells.append(
            f"%%state t{i}{after} --retries 3 --backoff fixed:1ms\nimport sys\n"
            "sys.nbflow_tries = getattr(sys, 'nbflow_tries', 0) + 1\n"
            "if sys.nbflow_tries % 4:\n    raise RuntimeError('flaky')\n"
            f"y_{i} = {i}"
        )
    return [*cells, "%flow run t249", "%flow timeline"]


def test_a_large_plan_and_a_long_timeline_read_in_a_saved_notebook(
    lab_server: LabServer, lab_page: Page, artifacts: Path
) -> None:
    """Executed headless and opened in JupyterLab: the 292-state plan is drawn with each
    region's chain folded into one node, and the timeline shows its 1,000 attempts."""
    import nbformat
    from nbclient import NotebookClient
    from nbformat.sign import NotebookNotary

    cells = large_notebook_cells()
    notebook_file = lab_server.root / "large.ipynb"
    document = nbformat.v4.new_notebook(  # type: ignore[no-untyped-call]
        cells=[nbformat.v4.new_code_cell(c) for c in cells],  # type: ignore[no-untyped-call]
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}},
    )
    client = NotebookClient(
        document,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": lab_server.root}},
    )
    client.execute()
    # Signed as this user's, as `nbflow run` signs what it executes: an untrusted
    # notebook's inline SVG is sanitised down to its text.
    notary = NotebookNotary(data_dir=str(lab_server.root.parent / "data"))  # type: ignore[no-untyped-call]
    notary.sign(document)  # type: ignore[no-untyped-call]
    nbformat.write(document, str(notebook_file))  # type: ignore[no-untyped-call]
    show, timeline = cells.index("%flow show"), len(cells) - 1
    notebook = Notebook(lab_page, lab_server, "large.ipynb")
    with debug_on_failure(lab_page, notebook, artifacts):
        notebook.open()
        expect_saved_picture(notebook, show, Widgets.STATE, 12)
        legend = notebook.output(show).locator(".nbflow-legend").text_content() or ""
        assert "completed 292" in legend, legend
        notebook.screenshot(show, artifacts / "large_plan.png", top=True)
        expect_saved_picture(notebook, timeline, "rect.nbflow-attempt", 1000)
        notebook.screenshot(timeline, artifacts / "large_timeline.png", top=True)
