"""The commands of :mod:`nbflow.cli.main`."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

from nbflow import maintenance
from nbflow.cli.errors import EXIT_FAILED, EXIT_OK, CommandLineError
from nbflow.errors import NbflowError
from nbflow.kernel.views import StateCounts, run_row
from nbflow.store import Home
from nbflow.ui.text import TextPresenter


def resolve_run(home: Home, prefix: str) -> str:
    """The run id ``prefix`` names."""
    try:
        return home.events.run_named(prefix)
    except NbflowError as exc:
        raise CommandLineError(f"nbflow: {exc.message} in {home.root}") from None


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
