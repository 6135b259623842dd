"""Skip tags (DESIGN §3): a tagged state is entered and completed on its base snapshot,
its code not run, and its downstream sees its upstream's variables."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import nbformat
import pytest
from test_cli_run import code_cell, nbflow_command

from nbflow import Flow, NbflowError, RunPhase
from nbflow.engine.history import read_history
from nbflow.kernel.arguments import skip_tags, state_options
from nbflow.kernel.views import attempt_bars
from nbflow.model.events import StateSkipped
from nbflow.store import Home


def three_states(flow: Flow, log: list[str]) -> None:
    def load(ctx: dict[str, Any]) -> dict[str, Any]:
        log.append("load")
        return {**ctx, "rows": 3}

    def plot(ctx: dict[str, Any]) -> dict[str, Any]:
        log.append("plot")
        return {**ctx, "figure": "drawn"}

    def report(ctx: dict[str, Any]) -> dict[str, Any]:
        log.append("report")
        return {**ctx, "seen": sorted(ctx)}

    flow.declare("load", load)
    flow.declare("plot", plot, after=["load"], tags=["slow", "figures"])
    flow.declare("report", report, after=["plot"])


def test_a_tagged_state_is_skipped_and_its_downstream_sees_its_upstream(tmp_path: Path) -> None:
    log: list[str] = []
    with Flow("tags", tmp_path / ".nbflow") as flow:
        three_states(flow, log)
        result = flow.run(skip_tags=["slow"])
        assert result.phase is RunPhase.COMPLETED
        assert log == ["load", "report"]
        assert flow.restore("report") == {"rows": 3, "seen": ["rows"]}
        history = flow.engine.history(result.run_id)
        assert history.completed["plot"] == history.completed["load"]  # its base snapshot
        stream = flow.home.events.read_range(result.run_id)
        skipped = [e.event for e in stream if isinstance(e.event, StateSkipped)]
        assert [(s.state_id, s.tags) for s in skipped] == [("plot", ("slow",))]
        outcomes = {bar.state_id: bar.outcome for bar in attempt_bars(stream)}
        assert outcomes == {"load": "completed", "plot": "skipped", "report": "completed"}

        log.clear()
        again = flow.run(fresh=True, cache=False)  # without skip tags, it runs
        assert again.phase is RunPhase.COMPLETED
        assert log == ["load", "plot", "report"]
        assert flow.restore("report", again.run_id)["figure"] == "drawn"


def test_skip_tags_are_part_of_the_manifest(tmp_path: Path) -> None:
    with Flow("tags", tmp_path / ".nbflow") as flow:
        three_states(flow, [])
        assert flow.manifest(skip_tags=["slow"]).run_config.skip_tags == ("slow",)
        assert flow.manifest(skip_tags=["b", "a", "b"]).run_config.skip_tags == ("a", "b")
        assert flow.manifest().run_config.skip_tags == ()


def test_tags_and_skip_tags_are_checked_like_names() -> None:
    from IPython.core.error import UsageError

    assert state_options("s --tags slow,figures --tags slow").tags == ("slow", "figures")
    assert skip_tags(["b,a", "a"]) == ("a", "b")
    for line in ("s --tags 'bad tag'", "s --tags a,,b", "s --tags"):
        with pytest.raises(UsageError):
            state_options(line)
    with pytest.raises(UsageError, match="--skip-tags"):
        skip_tags(["9lives"])


def test_flow_declare_checks_tags_like_state_names(tmp_path: Path) -> None:
    with Flow("tags", tmp_path / ".nbflow") as flow, pytest.raises(NbflowError, match="tag"):
        flow.declare("x", lambda c: c, tags=["two words"])


def test_nbflow_run_skip_tags_does_not_execute_the_tagged_cell(tmp_path: Path) -> None:
    cells = [
        code_cell("%%state load\nrows = [1, 2, 3]"),
        code_cell("%%state plot --after load --tags slow\nopen('plot.ran', 'w')\nfigure = 1"),
        code_cell("%%state report --after plot\nfound = 'figure' in dir()\ntotal = sum(rows)"),
        code_cell("print('total', total, 'figure', found)"),
    ]
    path = tmp_path / "tagged.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)  # type: ignore[no-untyped-call]
    done = subprocess.run(
        nbflow_command("run", str(path), "--skip-tags", "slow"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "plot.ran").exists()
    assert "skipped (tagged)" in done.stderr
    executed = nbformat.read(tmp_path / "tagged.output.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    assert "total 6 figure False" in executed.cells[3].outputs[0]["text"]
    with Home(tmp_path / ".nbflow") as home:
        (record,) = home.events.runs(flow_id="tagged.ipynb")
        history = read_history(record.run_id, home.events.read_range(record.run_id))
        assert set(history.completed) == {"load", "plot", "report"}
    bad = subprocess.run(
        nbflow_command("run", str(path), "--skip-tags", "no good"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2
    assert "--skip-tags" in bad.stderr
