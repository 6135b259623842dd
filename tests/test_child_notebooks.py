"""Child runs of notebooks (DESIGN §3 "Child runs"), with real processes: a parent
notebook run by ``nbflow run`` starts a child notebook, and is SIGKILLed at the worst
moments. Every process a test starts is killed by pid at its end."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import nbformat
import pytest
from test_cli_run import code_cell, descendants, nbflow_command

from nbflow.engine.history import read_history
from nbflow.model.events import ChildOf, ChildRunJoined, ChildRunSpawned, StateCompleted
from nbflow.store import Home

pytestmark = pytest.mark.slow

CHILD = [
    code_cell("region = 'all'\nbarrier = []", metadata={"tags": ["parameters"]}),
    code_cell("import os, time"),
    code_cell(
        "%%state load\nopen('child.log', 'a').write(f'load {region}\\n')\n"
        "started = time.time()\nrows = {'north': 3, 'south': 4}"
    ),
    code_cell(
        "%%state summarize --after load\nopen('child.log', 'a').write(f'summarize {region}\\n')\n"
        "while os.path.exists(f'hold-{region}'):\n    time.sleep(0.05)\n"
        "open(f'started-{region}', 'w').close()\ndeadline = time.time() + 120\n"
        "while not all(os.path.exists(f'started-{r}') for r in barrier):\n"
        "    assert time.time() < deadline, 'the other child never started'\n"
        "    time.sleep(0.05)\n"
        "total = rows.get(region, 7) * 10\nended = time.time()"
    ),
]


def parent_cells(body: str) -> list[object]:
    return [
        code_cell("import os, time\nimport nbflow"),
        code_cell(f"%%state prepare\n{body}"),
        code_cell("%%state report --after prepare\nreport = f'total {total}'"),
    ]


ONE_CHILD = (
    "result = nbflow.run_child('child/child.ipynb', {'region': 'north'})\n"
    "total = result.variables['total']\nstatus = result.status\n"
    "open('parent.log', 'a').write('joined\\n')\n"
    "while os.path.exists('hold-parent'):\n    time.sleep(0.05)"
)


def write(path: Path, cells: list[object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    notebook = nbformat.v4.new_notebook(cells=cells)  # type: ignore[no-untyped-call]
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]
    return path


def run_parent(folder: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        nbflow_command("run", str(folder / "driver.ipynb")),
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_parent(folder: Path, processes: list[int]) -> subprocess.Popen[str]:
    cli = subprocess.Popen(
        nbflow_command("run", str(folder / "driver.ipynb")),
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    processes.append(cli.pid)
    return cli


def wait_for(path: Path, text: str, process: subprocess.Popen[str]) -> None:
    """Until ``text`` is in ``path``; fails if ``process`` (the parent) ends first."""
    deadline = time.monotonic() + 120
    while not (path.exists() and text in path.read_text()):
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path.name}"
        assert process.poll() is None, "the parent ended before it was killed"
        time.sleep(0.05)


def child_runs(folder: Path, home: str = ".nbflow", flow_id: str = "child.ipynb") -> list[str]:
    """The runs of the child's flow in its history, newest first."""
    with Home(folder / home) as opened:
        return [r.run_id for r in opened.events.runs(flow_id=flow_id)]


def completions(folder: Path, run_id: str, home: str = ".nbflow") -> list[str]:
    """The states ``run_id`` completed, in order."""
    with Home(folder / home) as opened:
        stream = opened.events.read_range(run_id)
    return [e.event.state_id for e in stream if isinstance(e.event, StateCompleted)]


def parent_variables(folder: Path) -> str:
    """What the parent's state printed (nbflow's own notices left out)."""
    executed = nbformat.read(folder / "driver.output.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    text = "".join(o.get("text", "") for o in executed.cells[1].get("outputs", []))
    return "\n".join(line for line in text.splitlines() if not line.startswith("nbflow: "))


@pytest.mark.parametrize("child_too", [True, False], ids=["child-killed", "child-orphaned"])
def test_parent_killed_while_the_child_runs(
    tmp_path: Path, processes: list[int], child_too: bool
) -> None:
    write(tmp_path / "child" / "child.ipynb", CHILD)
    write(tmp_path / "driver.ipynb", parent_cells(ONE_CHILD))
    (tmp_path / "child" / "hold-north").touch()
    cli = start_parent(tmp_path, processes)
    wait_for(tmp_path / "child" / "child.log", "summarize north", cli)
    parent_kernel = [p for p in descendants(cli.pid) if p in _children_of(cli.pid)]
    doomed = [cli.pid, *parent_kernel]
    if child_too:
        doomed = [cli.pid, *descendants(cli.pid)]
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):  # a child that ended meanwhile
            os.kill(pid, signal.SIGKILL)
    cli.wait(timeout=30)
    (tmp_path / "child" / "hold-north").unlink()

    again = run_parent(tmp_path)
    assert again.returncode == 0, again.stderr
    assert "completed: 2/2 states" in again.stdout
    (child_run,) = child_runs(tmp_path / "child")  # exactly one child run in its history
    assert completions(tmp_path / "child", child_run) == ["load", "summarize"]
    executed = (tmp_path / "child" / "child.log").read_text().split("\n")
    assert executed.count("load north") == 1  # completed before the kill: not again
    assert executed.count("summarize north") == (2 if child_too else 1)
    with Home(tmp_path / "child" / ".nbflow") as home:
        stream = home.events.read_range(child_run)
    (note,) = [e.event for e in stream if isinstance(e.event, ChildOf)]
    assert note.parent_state_id == "prepare"
    with Home(tmp_path / ".nbflow") as home:
        (parent_run,) = [r.run_id for r in home.events.runs(flow_id="driver.ipynb")]
        history = read_history(parent_run, home.events.read_range(parent_run))
    assert note.parent_run_id == parent_run
    ((_, record),) = history.children.items()
    assert record.spawned.child_run_id == child_run
    assert record.joined is not None
    assert record.joined.status == "completed"


def test_parent_killed_after_the_child_completed(tmp_path: Path, processes: list[int]) -> None:
    write(tmp_path / "child" / "child.ipynb", CHILD)
    write(tmp_path / "driver.ipynb", parent_cells(ONE_CHILD + "\nprint(total, status)"))
    (tmp_path / "hold-parent").touch()
    cli = start_parent(tmp_path, processes)
    wait_for(tmp_path / "parent.log", "joined", cli)
    for pid in [cli.pid, *descendants(cli.pid)]:
        with contextlib.suppress(ProcessLookupError):  # a child that ended meanwhile
            os.kill(pid, signal.SIGKILL)
    cli.wait(timeout=30)
    (tmp_path / "hold-parent").unlink()
    child_log = (tmp_path / "child" / "child.log").read_text()

    again = run_parent(tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "child" / "child.log").read_text() == child_log  # not run again
    assert len(child_runs(tmp_path / "child")) == 1
    assert "30 completed" in parent_variables(tmp_path)  # as an uninterrupted run

    uninterrupted = tmp_path / "uninterrupted"
    write(uninterrupted / "child" / "child.ipynb", CHILD)
    write(uninterrupted / "driver.ipynb", parent_cells(ONE_CHILD + "\nprint(total, status)"))
    assert run_parent(uninterrupted).returncode == 0
    assert parent_variables(uninterrupted) == parent_variables(tmp_path)


def test_two_children_of_one_state_run_at_the_same_time(tmp_path: Path) -> None:
    write(tmp_path / "child" / "child.ipynb", CHILD)
    body = (
        "both = ['north', 'south']  # each child waits until both are in 'summarize'\n"
        "north = nbflow.child('child/child.ipynb', {'region': 'north', 'barrier': both}, "
        "key='north')\n"
        "south = nbflow.child('child/child.ipynb', {'region': 'south', 'barrier': both}, "
        "key='south')\n"
        "n, s = north.result(), south.result()\n"
        "total = n.variables['total'] + s.variables['total']\n"
        "spans = [(r.variables['started'], r.variables['ended']) for r in (n, s)]\n"
        "print(n.status, s.status)\n"
        "print(n.variables['total'], s.variables['total'], n.run_id != s.run_id)\n"
        "print(spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1])"
    )
    write(tmp_path / "driver.ipynb", parent_cells(body))
    done = run_parent(tmp_path)
    assert done.returncode == 0, done.stderr
    printed = parent_variables(tmp_path)
    assert "completed completed" in printed
    assert "30 40 True" in printed  # each its own result
    assert printed.endswith("\nTrue")  # their run intervals overlap
    assert len(child_runs(tmp_path / "child")) == 2
    with Home(tmp_path / ".nbflow") as home:
        (parent_run,) = [r.run_id for r in home.events.runs(flow_id="driver.ipynb")]
        stream = home.events.read_range(parent_run)
    spawned = [e.event.key for e in stream if isinstance(e.event, ChildRunSpawned)]
    joined = [e.event.key for e in stream if isinstance(e.event, ChildRunJoined)]
    assert spawned == ["north", "south"]
    assert joined == ["north", "south"]


def _children_of(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def test_child_variables_are_read_lazily_and_memory_mapped(tmp_path: Path) -> None:
    import mmap

    import numpy as np

    import nbflow
    from nbflow import Flow

    child = write(
        tmp_path / "big" / "big.ipynb",
        [
            code_cell("import numpy as np"),
            code_cell("%%state make\nbig = np.ones(100 * 2**20 // 8)\nsmall = 3"),
        ],
    )
    seen: dict[str, object] = {}

    def parent(ctx: dict[str, object]) -> dict[str, object]:
        result = nbflow.run_child(child)
        seen["names"] = {"big", "np", "small"} <= set(result.variables)
        big = result.variables["big"]
        base = big  # an array over a memoryview over the artifact's mapping
        while isinstance(base, (np.ndarray, memoryview)):
            base = base.base if isinstance(base, np.ndarray) else base.obj
        seen["mapped"] = isinstance(base, mmap.mmap)
        seen["sum"] = float(np.sum(big))
        return {**ctx, "small": result.variables["small"], "status": result.status}

    with Flow("lazy", tmp_path / ".nbflow") as flow:
        flow.declare("parent", parent)
        assert flow.run().phase.value == "completed"
        assert flow.restore("parent") == {"small": 3, "status": "completed"}
    assert seen == {"names": True, "mapped": True, "sum": 100 * 2**20 / 8}


def test_a_replay_of_the_parent_serves_the_recorded_child(tmp_path: Path) -> None:
    import nbflow
    from nbflow import Flow

    child = write(tmp_path / "child" / "child.ipynb", CHILD)

    def parent(ctx: dict[str, object]) -> dict[str, object]:
        result = nbflow.run_child(child, {"region": "south"})
        return {**ctx, "total": result.variables["total"]}

    with Flow("replayed", tmp_path / ".nbflow") as flow:
        flow.declare("parent", parent)
        first = flow.run()
        replay = flow.replay(first.run_id)
    assert replay.replay is not None
    assert replay.replay.reproduced
    assert len(child_runs(tmp_path / "child")) == 1  # no child started again
    assert (tmp_path / "child" / "child.log").read_text().split("\n").count("load south") == 1
