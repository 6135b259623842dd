"""``nbflow run``: a notebook executed headless as one run, and resumed after a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import nbformat

STATE_LOG = "states.log"


def code_cell(source: str, **fields: Any) -> Any:
    return nbformat.v4.new_code_cell(source, **fields)  # type: ignore[no-untyped-call]


def write_notebook(folder: Path) -> Path:
    cells = [
        code_cell("n = 3", metadata={"tags": ["parameters"]}),
        code_cell("import os, time\nprint('plain cell ran')"),
        code_cell(
            f"%%state load\nopen({STATE_LOG!r}, 'a').write('load\\n')\nrows = list(range(n))\nrows"
        ),
        code_cell(
            f"%%state clean --after load\nopen({STATE_LOG!r}, 'a').write('clean\\n')\n"
            "rows = [r * 2 for r in rows]\nprint('clean', rows)"
        ),
        code_cell(
            f"%%state train --after clean\nopen({STATE_LOG!r}, 'a').write('train\\n')\n"
            "while os.path.exists('hold'):\n    time.sleep(0.05)\nmodel = sum(rows)"
        ),
        code_cell("print('model', model)"),
    ]
    notebook = nbformat.v4.new_notebook(cells=cells)  # type: ignore[no-untyped-call]
    path = folder / "pipeline.ipynb"
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]
    return path


def nbflow_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "nbflow.cli", *args]


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        children = (task / "children").read_text().split()
        for child in map(int, children):
            found += [child, *descendants(child)]
    return found


def outputs(path: Path) -> list[str]:
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    shown = []
    for cell in notebook.cells:
        texts = [
            o.get("text") or o.get("data", {}).get("text/plain", "")
            for o in cell.get("outputs", [])
        ]
        shown.append("".join(texts))
    return shown


def test_run_is_killed_in_state_3_and_the_same_command_resumes_it(tmp_path: Path) -> None:
    path = write_notebook(tmp_path)
    output = tmp_path / "out.ipynb"
    command = nbflow_command("run", str(path), "-p", "n=4", "--output", str(output))
    (tmp_path / "hold").touch()
    cli = subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    log = tmp_path / STATE_LOG
    deadline = time.monotonic() + 120
    while not (log.exists() and "train" in log.read_text()):
        assert time.monotonic() < deadline, "train never started"
        assert cli.poll() is None, cli.stderr.read() if cli.stderr else ""
        time.sleep(0.05)
    kernels = descendants(cli.pid)
    assert kernels, "the kernel is a child of the command"
    for pid in [cli.pid, *kernels]:
        os.kill(pid, signal.SIGKILL)
    cli.wait(timeout=30)
    (tmp_path / "hold").unlink()
    assert log.read_text().split() == ["load", "clean", "train"]

    again = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resuming run" in again.stderr
    assert log.read_text().split() == ["load", "clean", "train", "train"]  # 1-2 not again
    shown = outputs(output)
    assert shown[1] == ""  # injected parameters
    assert "plain cell ran" in shown[2]
    assert "[0, 1, 2, 3]" in shown[3]  # load's output, kept from the first execution
    assert "clean [0, 2, 4, 6]" in shown[4]
    assert "model 12" in shown[6]
    assert "completed: 3/3 states" in again.stdout


def test_exit_codes_and_json_summary(tmp_path: Path) -> None:
    path = write_notebook(tmp_path)
    done = subprocess.run(
        nbflow_command("run", str(path), "--json"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["run"]["status"] == "completed"
    assert [a["state_id"] for a in summary["attempts"]] == ["load", "clean", "train"]
    assert (tmp_path / "pipeline.output.ipynb").exists()
    no_resume = subprocess.run(
        nbflow_command("resume", str(path)), cwd=tmp_path, capture_output=True, text=True
    )
    assert no_resume.returncode == 2
    assert "no interrupted run" in no_resume.stderr
    broken = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    broken.cells[3].source = broken.cells[3].source.replace("rows = [", "rows = 1 / 0 or [")
    nbformat.write(broken, path)  # type: ignore[no-untyped-call]
    failed = subprocess.run(
        nbflow_command("run", str(path)), cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert failed.returncode == 1
    assert "ZeroDivisionError" in "".join(outputs(tmp_path / "pipeline.output.ipynb"))
    bad = subprocess.run(
        nbflow_command("run", str(path), "-p", "not a pair"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
