"""The commands of :mod:`nbflow.cli.main`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from nbflow import maintenance
from nbflow.cli.errors import EXIT_FAILED, EXIT_OK, CommandLineError
from nbflow.cli.pictures import combined_svg, run_pictures
from nbflow.cli.staleness import notebook_view
from nbflow.kernel.views import StateCounts, run_bars, run_row, snapshot_size
from nbflow.store import Home
from nbflow.ui.dag_svg import render_plan_svg
from nbflow.ui.text import TextPresenter


def resolve_run(home: Home, prefix: str) -> str:
    """The run id ``prefix`` names."""
    matches = home.events.find_runs(prefix)
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise CommandLineError(f"nbflow: no run id starts with {prefix!r} in {home.root}")
    raise CommandLineError(f"nbflow: {len(matches)} runs start with {prefix!r}; type more of it")


def runs(home: Home, notebook: str | None, as_json: bool, limit: int | None) -> int:
    """``nbflow runs``: the newest ``limit`` runs (None: every one)."""
    counts = StateCounts(home.artifacts)
    records = home.events.runs(flow_id=notebook, limit=limit)
    rows = [run_row(home.events, r, counts(r.manifest_id), False) for r in records]
    if as_json:
        print(
            json.dumps(
                [
                    {**asdict(row), "flow_id": rec.flow_id}
                    for row, rec in zip(rows, records, strict=True)
                ],
                indent=2,
            )
        )
    else:
        total = home.events.count_runs(notebook) if len(rows) == limit else len(rows)
        TextPresenter().runs(rows, total)
    return EXIT_OK


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


def verify(home: Home) -> int:
    """``nbflow verify``."""
    total = sum(1 for _ in home.artifacts.ids())

    def progress(done: int) -> None:
        if sys.stderr.isatty():
            print(f"\rverifying {done}/{total}", end="", file=sys.stderr)

    report = maintenance.verify(home, progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    if report.damaged:
        print(f"{len(report.damaged)} of {report.checked} artifacts are damaged:")
        for artifact_id in report.damaged:
            print(f"  {artifact_id}")
        return EXIT_FAILED
    print(f"all {report.checked} artifacts in {home.root} are intact")
    return EXIT_OK


def trust(home: Home, yes: bool) -> int:
    """``nbflow trust DIR``: check every artifact, show what the history holds, sign it."""
    from nbflow import trust as adoption

    total = sum(1 for _ in home.artifacts.ids())

    def progress(done: int) -> None:
        if sys.stderr.isatty():
            print(f"\rchecking {done}/{total}", end="", file=sys.stderr)

    report = adoption.inspect(home, progress)
    if sys.stderr.isatty():
        print(file=sys.stderr)
    print("\n".join(report.lines()))
    if report.damaged:
        print("nothing was signed: a damaged history cannot be trusted as a whole")
        return EXIT_FAILED
    if not report.unsigned:
        return EXIT_OK
    print(
        "Trusting it lets nbflow unpickle its snapshots and run its code, as if you had "
        "made it. Trust it only if you trust whoever made it."
    )
    if not yes:
        if not sys.stdin.isatty():
            raise CommandLineError("nbflow trust: add --yes to sign it (no terminal to ask)")
        if input("Sign it with your key? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing was signed")
            return EXIT_OK
    signed = adoption.adopt(home, report)
    print(f"signed {signed} documents with your key ({home.key.path})")
    return EXIT_OK


def gc(home: Home, dry_run: bool, keep: str | None = None) -> int:
    """``nbflow gc [--keep SIZE]``."""
    try:
        keep_bytes = maintenance.parse_size(keep) if keep is not None else None
    except ValueError as exc:
        raise CommandLineError(f"nbflow gc --keep: {exc}") from None
    report = maintenance.collect_garbage(home, dry_run=dry_run, keep_bytes=keep_bytes)
    print(maintenance.describe(report, dry_run))
    return EXIT_OK
