"""A history made by another user is never unpickled until it is adopted (DESIGN §5)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import nbformat
from conftest import KernelFactory
from test_cli_run import code_cell, descendants, nbflow_command


def user(tmp_path: Path, name: str) -> dict[str, str]:
    """The environment of a user whose Jupyter data folder (and so signing key) is apart."""
    folder = tmp_path / f"user-{name}"
    folder.mkdir(exist_ok=True)
    return {"JUPYTER_DATA_DIR": str(folder)}


def evil_notebook(folder: Path, marker: Path) -> Path:
    cells = [
        code_cell(
            "import os, time\n"
            "class Evil:\n"
            "    def __reduce__(self):\n"
            f"        return (os.system, ('touch {marker}',))\n"
        ),
        code_cell("%%state load\nevil = Evil()\nrows = [1, 2, 3]"),
        code_cell(
            "%%state train --after load\n"
            "while os.path.exists('hold'):\n    time.sleep(0.05)\nmodel = sum(rows)"
        ),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)  # type: ignore[no-untyped-call]
    path = folder / "evil.ipynb"
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]
    return path


def interrupted_by_kill(path: Path, env: dict[str, str]) -> None:
    """``nbflow run`` of ``path`` killed (with its kernel) inside its second state."""
    folder = path.parent
    (folder / "hold").touch()
    cli = subprocess.Popen(
        nbflow_command("run", str(path)),
        cwd=folder,
        env={**os.environ, **env},
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert time.monotonic() < deadline, "the second state never started"
            assert cli.poll() is None
            with contextlib.suppress(Exception):
                import sqlite3

                connection = sqlite3.connect(folder / ".nbflow" / "nbflow.db")
                entered = connection.execute(
                    "SELECT count(*) FROM events WHERE kind = 'state_entered'"
                ).fetchone()[0]
                connection.close()
                if entered >= 2:
                    break
            time.sleep(0.1)
    finally:
        for pid in [*descendants(cli.pid), cli.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        cli.wait(timeout=30)
    (folder / "hold").unlink()


def test_a_foreign_history_with_a_malicious_pickle_is_refused_everywhere(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    original, copy = tmp_path / "original", tmp_path / "copy"
    original.mkdir()
    marker = tmp_path / "pwned"
    interrupted_by_kill(evil_notebook(original, marker), user(tmp_path, "alice"))
    assert not marker.exists()
    shutil.copytree(original, copy)

    bob = user(tmp_path, "bob")
    kernel = kernels("evil.ipynb", folder=copy, **bob)
    loaded = kernel.ok("%load_ext nbflow")
    assert "was interrupted in state 'train'" in loaded.text
    assert "This history was made elsewhere" in loaded.text
    assert "%flow trust" in loaded.text
    buttons = kernel.ok(
        "print([b.description for b in __nbflow__.session.presenter.last_banner.children"
        " if type(b).__name__ == 'Button'])"
    )
    assert buttons.stdout.strip() == "['Dismiss']"  # no one-click Resume
    for command in ("%flow restore", "%flow resume", "%flow restore load"):
        refused = kernel.run(command)
        assert refused.status == "error", command
        assert "untrusted_history" in refused.text, refused.text
        assert "not signed with your key" in refused.text
    run_id = kernel.ok("print(__nbflow__.session.home.events.runs()[0].run_id)").stdout.strip()
    pressed = kernel.run(f"await __nbflow__.session.resume_run({run_id!r})")  # the button's call
    assert "untrusted_history" in pressed.text
    kernel.close()

    cli = subprocess.run(
        nbflow_command("run", str(copy / "evil.ipynb")),
        cwd=copy,
        env={**os.environ, **bob},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 2, cli.stderr
    assert "[untrusted_history]" in cli.stderr
    assert f"nbflow trust {copy}" in cli.stderr
    assert not marker.exists()


def test_a_benign_foreign_history_restores_after_trust(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    original, copy = tmp_path / "original", tmp_path / "copy"
    original.mkdir()
    alice = kernels("analysis.ipynb", folder=original, **user(tmp_path, "alice"))
    alice.ok("%load_ext nbflow")
    alice.ok("%%state load\nrows = [1, 2, 3]\ntotal = 41")
    alice.close()
    shutil.copytree(original, copy)

    bob = kernels("analysis.ipynb", folder=copy, **user(tmp_path, "bob"))
    bob.ok("%load_ext nbflow")
    assert "untrusted_history" in bob.run("%flow restore").text
    shown = bob.ok("%flow trust").text
    assert "1 runs of 1 notebooks" in shown
    assert "analysis.ipynb: 1 runs (1 completed)" in shown
    assert "documents are not signed with your key" in shown
    assert "%flow trust --yes" in shown
    assert "untrusted_history" in bob.run("%flow restore").text  # showing signs nothing
    assert "the history is yours now" in bob.ok("%flow trust --yes").text
    bob.ok("%flow restore")
    assert bob.ok("print(rows, total)").stdout.strip() == "[1, 2, 3] 41"
    assert "already signed" in bob.ok("%flow trust").text
