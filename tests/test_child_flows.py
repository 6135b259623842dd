"""Child runs of ``Flow`` targets through the Python API (DESIGN §3 "Child runs"): the
parent is a real process, its children forked workers; both are SIGKILLed at the worst
moments. Every process a test starts is killed by pid at its end."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import test_child_notebooks as notebook_children
from test_child_notebooks import wait_for
from test_cli_run import descendants

from nbflow.engine.history import read_history
from nbflow.model.events import ChildOf
from nbflow.store import Home

pytestmark = pytest.mark.slow

SCRIPT = """
import json, os, sys, time
from pathlib import Path
import nbflow
from nbflow import Flow, RunPhase

folder = Path(sys.argv[1])
mode = sys.argv[2]

def log(name, text):
    with (folder / name).open("a") as out:
        out.write(text + "\\n")

region_flow = Flow("region", folder / "child_home")

def load(ctx):
    log("child.log", f"load {ctx['region']}")
    return {**ctx, "rows": {"north": 3, "south": 4}, "started": time.time()}

def summarize(ctx):
    log("child.log", f"summarize {ctx['region']}")
    while (folder / f"hold-{ctx['region']}").exists():
        time.sleep(0.05)
    (folder / f"started-{ctx['region']}").touch()
    deadline = time.time() + 120
    while not all((folder / f"started-{r}").exists() for r in ctx.get("barrier", [])):
        assert time.time() < deadline, "the other child never started"
        time.sleep(0.05)
    return {**ctx, "total": ctx["rows"][ctx["region"]] * 10, "ended": time.time(),
            "pid": os.getpid()}

region_flow.declare("load", load)
region_flow.declare("summarize", summarize, after=["load"])

def prepare(ctx):
    if mode == "two":
        both = ["north", "south"]
        north = nbflow.child(region_flow, {"region": "north", "barrier": both}, key="north")
        south = nbflow.child(region_flow, {"region": "south", "barrier": both}, key="south")
        n, s = north.result(), south.result()
        spans = [(r.variables["started"], r.variables["ended"]) for r in (n, s)]
        overlap = spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]
        return {**ctx, "totals": [n.variables["total"], s.variables["total"]],
                "overlap": overlap, "pids": [n.variables["pid"], s.variables["pid"]],
                "statuses": [n.status, s.status]}
    result = nbflow.run_child(region_flow, {"region": "north"})
    log("parent.log", "joined")
    while (folder / "hold-parent").exists():
        time.sleep(0.05)
    return {**ctx, "total": result.variables["total"], "status": result.status,
            "child": result.run_id}

def report(ctx):
    return {**ctx, "report": f"total {ctx.get('total')}"}

with Flow("driver", folder / ".nbflow") as flow:
    flow.declare("prepare", prepare)
    flow.declare("report", report, after=["prepare"])
    result = flow.run()
    final = flow.restore("report")
    final.pop("child", None)
    print(json.dumps({"phase": result.phase.value, "final": final, "parent": os.getpid()}))
"""


def start(folder: Path, mode: str, processes: list[int]) -> subprocess.Popen[str]:
    script = folder / "parent.py"
    script.write_text(textwrap.dedent(SCRIPT))
    process = subprocess.Popen(
        [sys.executable, str(script), str(folder), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    processes.append(process.pid)
    return process


def finish(folder: Path, mode: str, processes: list[int]) -> dict[str, object]:
    process = start(folder, mode, processes)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    summary: dict[str, object] = json.loads(out.strip().splitlines()[-1])
    assert summary["phase"] == "completed", summary
    return summary


def child_runs(folder: Path) -> list[str]:
    return notebook_children.child_runs(folder, "child_home", "region")


def completions(folder: Path, run_id: str) -> list[str]:
    return notebook_children.completions(folder, run_id, "child_home")


@pytest.mark.parametrize("child_too", [True, False], ids=["child-killed", "child-orphaned"])
def test_parent_killed_while_the_flow_child_runs(
    tmp_path: Path,
    processes: list[int],
    child_too: bool,
) -> None:
    (tmp_path / "hold-north").touch()
    parent = start(tmp_path, "one", processes)
    wait_for(tmp_path / "child.log", "summarize north", parent)
    workers = descendants(parent.pid)
    assert workers, "the child runs in a worker process of the parent"
    processes += workers
    for pid in [parent.pid, *(workers if child_too else [])]:
        with contextlib.suppress(ProcessLookupError):  # a child that ended meanwhile
            os.kill(pid, signal.SIGKILL)
    parent.wait(timeout=30)
    (tmp_path / "hold-north").unlink()

    summary = finish(tmp_path, "one", processes)
    assert summary["final"] == {"total": 30, "status": "completed", "report": "total 30"}
    (child_run,) = child_runs(tmp_path)  # exactly one child run in the child's home
    assert completions(tmp_path, child_run) == ["load", "summarize"]
    executed = (tmp_path / "child.log").read_text().split("\n")
    assert executed.count("load north") == 1
    assert executed.count("summarize north") == (2 if child_too else 1)
    with Home(tmp_path / "child_home") as home:
        stream = home.events.read_range(child_run)
    (note,) = [e.event for e in stream if isinstance(e.event, ChildOf)]
    with Home(tmp_path / ".nbflow") as home:
        (parent_run,) = [r.run_id for r in home.events.runs(flow_id="driver")]
        history = read_history(parent_run, home.events.read_range(parent_run))
    assert note.parent_run_id == parent_run
    ((_, record),) = history.children.items()
    assert record.spawned.child_run_id == child_run
    assert record.joined is not None


def test_parent_killed_after_the_flow_child_completed(
    tmp_path: Path,
    processes: list[int],
) -> None:
    (tmp_path / "hold-parent").touch()
    parent = start(tmp_path, "one", processes)
    wait_for(tmp_path / "parent.log", "joined", parent)
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=30)
    (tmp_path / "hold-parent").unlink()
    child_log = (tmp_path / "child.log").read_text()

    summary = finish(tmp_path, "one", processes)
    assert (tmp_path / "child.log").read_text() == child_log  # not run again
    assert len(child_runs(tmp_path)) == 1
    uninterrupted = tmp_path / "uninterrupted"
    uninterrupted.mkdir()
    assert finish(uninterrupted, "one", processes)["final"] == summary["final"]


def test_two_flow_children_of_one_state_run_at_the_same_time(
    tmp_path: Path,
    processes: list[int],
) -> None:
    summary = finish(tmp_path, "two", processes)
    final = summary["final"]
    assert isinstance(final, dict)
    assert final["totals"] == [30, 40]
    assert final["statuses"] == ["completed", "completed"]
    assert final["overlap"] is True
    pids = final["pids"]
    assert isinstance(pids, list)
    assert len(set(pids)) == 2
    assert summary["parent"] not in pids  # each in a worker process of its own
    assert len(child_runs(tmp_path)) == 2


def test_pictures_and_the_run_tree_show_each_child_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import xml.etree.ElementTree as ET

    from nbflow import Flow, child
    from nbflow.cli.commands import runs
    from nbflow.kernel.views import live_view, run_bars
    from nbflow.ui.dag_svg import render_plan_svg
    from nbflow.ui.timeline_svg import render_timeline_svg

    region = Flow("region", tmp_path / ".nbflow")
    region.declare("sum", lambda ctx: {**ctx, "total": ctx["n"] * 10})
    with Flow("driver", tmp_path / ".nbflow") as flow:

        def spawn(ctx: dict[str, object]) -> dict[str, object]:
            ran = [child(region, {"n": n}, key=f"n{n}").result() for n in (1, 2)]
            return {**ctx, "totals": [r.variables["total"] for r in ran]}

        flow.declare("spawn", spawn)
        result = flow.run()
        assert flow.restore("spawn") == {"totals": [10, 20]}
        stream = flow.home.events.read_range(result.run_id)
        bars = run_bars(stream)
        assert [b.state_id for b in bars] == ["spawn", "↳ region n1", "↳ region n2"]
        assert [b.outcome for b in bars] == ["completed"] * 3
        timeline = render_timeline_svg(result.run_id, bars)
        assert "its own timeline: %flow timeline" in timeline
        view, _, _ = live_view(flow.plan, stream, live=False)
        root = ET.fromstring(render_plan_svg(view, use_dot=False).svg)
        children = [e for e in root.iter() if e.get("class") == "nbflow-child"]
        assert len(children) == 2
        assert {e.get("data-status") for e in children} == {"completed"}
        runs(flow.home, None, False, None)
    tree = capsys.readouterr().out
    assert "└ spawn ↳ flow:region" in tree
    child_lines = [line for line in tree.splitlines() if line.startswith("    ")]
    assert len(child_lines) == 2  # the child runs, nested under their parent
    region.close()


def test_bad_child_calls_are_refused_with_clear_errors(tmp_path: Path) -> None:
    from nbflow import Flow, NbflowError, RunPhase, child

    with pytest.raises(NbflowError, match="no state runs"):
        child("other.ipynb")
    region = Flow("region", tmp_path / ".nbflow")
    region.declare("sum", lambda ctx: {**ctx, "total": 1})
    calls: dict[str, object] = {}

    def body(ctx: dict[str, object]) -> dict[str, object]:
        for name, target, kwargs in (
            ("missing", "nowhere.ipynb", {}),
            ("not_notebook", "script.py", {}),
            ("not_target", 42, {}),
        ):
            try:
                child(target, **kwargs)
            except NbflowError as exc:
                calls[name] = exc.code
        child(region, {"n": 1}, key="same").result()
        try:
            child(region, {"n": 2}, key="same")
        except NbflowError as exc:
            calls["reused"] = exc.code
        try:
            child(region, {"token": "ghp_" + "a1B2" * 9})
        except NbflowError as exc:
            calls["secret"] = exc.code
        return ctx

    with Flow("driver", tmp_path / ".nbflow") as flow:
        flow.declare("spawn", body)
        assert flow.run().phase is RunPhase.COMPLETED
        runs = [r for r in flow.home.events.runs(flow_id="region")]
    assert calls == {
        "missing": "child_target_not_found",
        "not_notebook": "child_target_invalid",
        "not_target": "child_target_invalid",
        "reused": "child_key_reused",
        "secret": "secrets_detected",
    }
    assert len(runs) == 1  # the refused ones started nothing
    region.close()
