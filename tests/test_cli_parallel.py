"""``nbflow run --parallel 2`` of the example notebook with two independent branches: the
branches run at once in two workers, each cell shows its own outputs, and a plain cell
sees them all. Also: a resume after the kernel was killed mid-branch, and bad options."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from test_cli_run import descendants, nbflow_command

from nbflow.model.events import (
    BranchAssigned,
    FanOutStarted,
    StateCached,
    StateCompleted,
    StateEntered,
)
from nbflow.store import Home

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[1] / "notebooks" / "parallel_branches.ipynb"


def cell_texts(path: Path) -> list[str]:
    notebook: Any = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    texts = []
    for cell in notebook.cells:
        parts = []
        for output in cell.get("outputs", []):
            if output["output_type"] == "stream":
                parts.append(output["text"])
            elif "data" in output:
                parts.append(output["data"].get("text/plain", ""))
        texts.append("".join(parts))
    return texts


def run_parallel(notebook: Path, *options: str) -> subprocess.CompletedProcess[str]:
    """``nbflow run --parallel 2 NOTEBOOK`` in the notebook's folder, to its end."""
    return subprocess.run(
        nbflow_command("run", "--parallel", "2", *options, str(notebook)),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=notebook.parent,
    )


def test_nbflow_run_parallel_2_of_the_example_notebook(tmp_path: Path) -> None:
    notebook = tmp_path / EXAMPLE.name
    shutil.copy(EXAMPLE, notebook)
    done = run_parallel(notebook)
    assert done.returncode == 0, done.stderr
    texts = cell_texts(notebook.with_name("parallel_branches.output.ipynb"))
    assert "100000 values" in texts[3]
    assert "spread 0.998" in texts[4], "pb_spread's output is in its own cell"
    assert "center 2.998" in texts[5], "pb_center's output is in its own cell"
    assert "center 2.998, spread 0.998" in texts[6]
    assert texts[8].strip() == "center 2.998, spread 0.998", "the plain cell saw both"
    with Home(tmp_path / ".nbflow") as home:
        (record,) = home.events.runs()
        assert record.status == "completed"
        stream = home.events.read_range(record.run_id)
        assert [e.event.max_parallel for e in stream if isinstance(e.event, FanOutStarted)] == [2]
        workers = {
            e.event.state_id: e.event.worker for e in stream if isinstance(e.event, BranchAssigned)
        }
        assert workers["pb_spread"] != workers["pb_center"], "two worker processes"
        order = [
            (type(e.event).__name__, getattr(e.event, "state_id", ""))
            for e in stream
            if isinstance(e.event, (StateEntered, StateCompleted))
        ]
        started = max(order.index(("StateEntered", s)) for s in ("pb_spread", "pb_center"))
        ended = min(order.index(("StateCompleted", s)) for s in ("pb_spread", "pb_center"))
        assert started < ended, "both branches were running at once"
    again = run_parallel(notebook)
    assert again.returncode == 0, again.stderr
    kept = cell_texts(notebook.with_name("parallel_branches.output.ipynb"))
    assert "spread 0.998" in kept[4], "a state served from the cache keeps its outputs"
    assert "center 2.998" in kept[5]
    assert kept[8].strip() == "center 2.998, spread 0.998"
    with Home(tmp_path / ".nbflow") as home:
        newest = home.events.runs()[0]
        stream = home.events.read_range(newest.run_id)
        served = {e.event.state_id for e in stream if isinstance(e.event, StateCached)}
        assert served == {"pb_data", "pb_spread", "pb_center", "pb_report"}


def test_a_killed_parallel_notebook_run_resumes_with_the_same_command(
    tmp_path: Path, processes: list[int]
) -> None:
    notebook = tmp_path / EXAMPLE.name
    shutil.copy(EXAMPLE, notebook)
    raw: Any = nbformat.read(notebook, as_version=4)  # type: ignore[no-untyped-call]
    # pb_center waits while the file 'hold' exists: the run is killed while it waits.
    raw.cells[5].source = raw.cells[5].source.replace(
        "burn(seconds)",
        "import os\nopen('center.log', 'a').write('run\\n')\n"
        "while os.path.exists('hold'):\n    time.sleep(0.05)",
    )
    nbformat.write(raw, notebook)  # type: ignore[no-untyped-call]
    (tmp_path / "hold").touch()
    first = subprocess.Popen(
        nbflow_command("run", "--parallel", "2", str(notebook)),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    processes.append(first.pid)
    deadline = time.monotonic() + 180
    # Its line, not the file: the file exists from the open, a moment before the write.
    log = tmp_path / "center.log"
    while not (log.exists() and log.read_text().strip() == "run"):
        assert first.poll() is None, "the run ended early"
        assert time.monotonic() < deadline, "pb_center never started"
        time.sleep(0.05)
    everything = [first.pid, *descendants(first.pid)]
    processes.extend(everything)
    for pid in everything:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    first.wait(timeout=30)
    (tmp_path / "hold").unlink()
    again = run_parallel(notebook)
    assert again.returncode == 0, again.stderr
    assert "resuming run" in again.stderr
    assert (tmp_path / "center.log").read_text().split() == ["run", "run"]
    texts = cell_texts(notebook.with_name("parallel_branches.output.ipynb"))
    assert texts[8].strip().startswith("center"), texts[8]
    with Home(tmp_path / ".nbflow") as home:
        (record,) = home.events.runs()
        stream = home.events.read_range(record.run_id)
        done = [e.event.state_id for e in stream if isinstance(e.event, StateCompleted)]
        assert sorted(done) == ["pb_center", "pb_data", "pb_report", "pb_spread"]


def test_bad_parallel_and_an_unreachable_scheduler_are_one_line_errors(tmp_path: Path) -> None:
    notebook = tmp_path / EXAMPLE.name
    shutil.copy(EXAMPLE, notebook)
    for args, expected in (
        (["--parallel", "0"], "--parallel: from 1 to 256"),
        (["--dask", "tcp://127.0.0.1:9"], "cannot be reached"),
    ):
        done = subprocess.run(
            nbflow_command("run", *args, str(notebook)),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert done.returncode != 0
        assert expected in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    if (tmp_path / ".nbflow").exists():
        with Home(tmp_path / ".nbflow") as home:
            assert home.events.runs() == [], "no run was started"
