"""``nbflow show``: a run's summary as text, its pictures as SVG, and with a notebook what
is stale. Apart from the other commands, so that they do not load what drawing and reading
notebooks need (nbformat, Graphviz's package)."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from nbflow.cli.commands import resolve_run
from nbflow.cli.errors import EXIT_FAILED, EXIT_OK, CommandLineError
from nbflow.cli.pictures import combined_svg, run_pictures
from nbflow.cli.staleness import notebook_view
from nbflow.kernel.views import StateCounts, run_bars, run_row, snapshot_size
from nbflow.store import Home
from nbflow.ui.dag_svg import render_plan_svg
from nbflow.ui.text import TextPresenter


def show(
    home: Home, prefix: str | None, svg: Path | None, as_json: bool, notebook: Path | None
) -> int:
    """``nbflow show [NOTEBOOK] [RUN]``: summary as text, pictures to ``svg``. With a
    notebook, its plan as it is now, stale states marked, and (by default) its newest run."""
    plan = notebook_view(home, notebook) if notebook is not None else None
    run_id = _run_to_show(home, prefix, notebook)
    if run_id is None:
        if plan is None:
            raise CommandLineError(f"nbflow show: {home.root} has no run yet")
        if as_json:
            print(json.dumps({"plan": [asdict(s) for s in plan.states]}, indent=2))
        else:
            TextPresenter().plan(plan)
        if svg is not None:
            _write_svg(svg, render_plan_svg(plan).svg, as_json)
        return EXIT_OK
    record = home.events.run(run_id)
    assert record is not None
    row = run_row(home.events, record, StateCounts(home.artifacts)(record.manifest_id), False)
    bars = run_bars(home.events.read_range(run_id), lambda sid: snapshot_size(home.artifacts, sid))
    if as_json:
        shown: dict[str, object] = {"run": asdict(row), "attempts": [asdict(b) for b in bars]}
        if plan is not None:
            shown["plan"] = [asdict(s) for s in plan.states]
        print(json.dumps(shown, indent=2))
    else:
        text = TextPresenter()
        if plan is not None:
            text.plan(plan)
        text.runs([row], 1)
        text.timeline(run_id, bars)
    if svg is not None:
        dag, timeline = run_pictures(home, run_id)
        if plan is not None:
            dag = render_plan_svg(plan)  # the plan as it is now, with what is stale
        _write_svg(svg, combined_svg(dag.svg, timeline), as_json, dag.engine)
        if dag.hint:
            print(dag.hint, file=sys.stderr)
    return EXIT_FAILED if row.status == "failed" else EXIT_OK


def _run_to_show(home: Home, prefix: str | None, notebook: Path | None) -> str | None:
    if prefix is not None:
        return resolve_run(home, prefix)
    newest = home.events.runs(flow_id=notebook.name if notebook else None, limit=1)
    return newest[0].run_id if newest else None


def _write_svg(path: Path, svg: str, as_json: bool, engine: str | None = None) -> None:
    try:
        path.write_text(svg, encoding="utf-8")
    except OSError as exc:
        raise CommandLineError(f"nbflow: cannot write {path}: {exc.strerror}") from None
    if not as_json:
        drawn = f" (DAG drawn with {engine})" if engine else ""
        print(f"wrote {path}{drawn}", file=sys.stderr)
