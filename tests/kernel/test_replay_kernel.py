"""Replay in a real kernel and through ``nbflow run --replay``: facts, ``now()`` and
``seed()`` come from the replayed run's record; nothing live is called."""

from __future__ import annotations

import subprocess
from pathlib import Path

import nbformat
from conftest import KernelFactory
from test_cli_run import code_cell, nbflow_command

SETUP = (
    "import nbflow, random\n"
    "def reading():\n"
    "    open('calls', 'a').write('x')\n"
    "    return {'celsius': 21}\n"
)
MEASURE = (
    "%%state measure\n"
    "value = nbflow.fact('reading', reading)\n"
    "when = nbflow.now()\n"
    "rng = random.Random(nbflow.seed())\n"
    "sample = [rng.random() for _ in range(3)]"
)


def calls(folder: Path) -> int:
    path = folder / "calls"
    return len(path.read_text()) if path.exists() else 0


def test_flow_replay_in_a_kernel_reproduces_the_run_exactly(
    kernels: KernelFactory, tmp_path: Path
) -> None:
    kernel = kernels(NBFLOW_TEXT="1")
    kernel.ok("%load_ext nbflow")
    kernel.ok("%flow mode declare")
    kernel.ok(SETUP)
    kernel.ok(MEASURE)
    kernel.ok("%%state report --after measure\nline = f\"{value['celsius']} {when} {sample}\"")
    kernel.ok("%flow run")
    assert calls(tmp_path) == 1
    before = kernel.ok("print(line)").stdout
    kernel.ok("line = 'changed since'; extra = 1")
    replay = kernel.ok("%flow replay")
    assert "removed extra" in replay.text
    assert "reproduced run" in replay.text
    assert "exactly" in replay.text
    assert calls(tmp_path) == 1  # zero live calls
    assert kernel.ok("print(line)").stdout == before
    assert kernel.ok("print('extra' in dir())").stdout.strip() == "False"
    assert "RUN" in kernel.ok("%flow replay --help").stdout
    missing = kernel.run("%flow replay nosuchrun")
    assert missing.status == "error"
    assert "no run id starts with 'nosuchrun'" in missing.text


def test_nbflow_run_replay_calls_nothing_live(tmp_path: Path) -> None:
    cells = [
        code_cell("site = 'north'", metadata={"tags": ["parameters"]}),
        code_cell(SETUP),
        code_cell(MEASURE),
        code_cell("print(site, value, sample)"),
    ]
    path = tmp_path / "measured.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)  # type: ignore[no-untyped-call]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            nbflow_command("run", str(path), *args),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )

    first = run("-p", "site=south")
    assert first.returncode == 0, first.stderr
    run_id = first.stdout.split("run ", 1)[1].split()[0]
    shown = nbformat.read(tmp_path / "measured.output.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    printed = shown.cells[4].outputs[0]["text"]
    assert printed.startswith("south")
    assert calls(tmp_path) == 1

    replayed = run("--replay", run_id)
    assert replayed.returncode == 0, replayed.stderr
    assert f"replay: reproduced run {run_id} exactly" in replayed.stdout
    assert calls(tmp_path) == 1
    again = nbformat.read(tmp_path / "measured.output.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    assert again.cells[4].outputs[0]["text"] == printed  # its parameters, its facts

    refused = run("--replay", run_id, "-p", "site=east")
    assert refused.returncode == 2
    assert "leave out -p" in refused.stderr
    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    notebook.cells[2].source += "\nsample.append(0)"
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]
    changed = run("--replay", run_id)
    assert changed.returncode == 2
    assert "the notebook changed since that run ('measure')" in changed.stderr
