"""Per-state overhead of the nbflow engine against DBOS Transact, in one process.

Workload: a run of N trivial states (default 200) in sequence. Each state takes a small
JSON context and returns it with one key changed, so every state writes a new checkpoint
and appends its events durably. nbflow runs with its shipped settings: SQLite in WAL mode
with ``synchronous=FULL``, artifacts fsynced. DBOS runs one ``@DBOS.step`` per state against
its SQLite system database, as shipped (rollback journal, ``synchronous=FULL``).

Per-state time: for nbflow, from the start of one state's body to the start of the next
(restore-or-reuse, body, checkpoint, StateCompleted + StateEntered commit); for the last
state, to the end of the run. For DBOS, around each step call inside the workflow (replay
check, body, pickling, the step's committed write). Rounds alternate between the two
tools; percentiles are over the pooled states of all rounds.

Usage: ``python bench/engine_overhead.py [--states N] [--rounds R] [--dir DIR]``.
The last line reads ``overhead ratio vs DBOS: <x>x`` (DBOS p50 per-state time divided by
nbflow's).
"""

from __future__ import annotations

import argparse
import pathlib
import sqlite3
import statistics
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import itertools

from nbflow import Flow, RunPhase


def run_nbflow_workload(n_states: int, workdir: pathlib.Path) -> tuple[list[float], float]:
    """Run N trivial states as one nbflow run; per-state durations (s) and the run's total."""
    marks: list[float] = []
    with Flow("bench", workdir / ".nbflow") as flow:
        for index in range(n_states):

            def body(ctx: dict[str, Any], index: int = index) -> dict[str, Any]:
                marks.append(time.perf_counter())
                updated = dict(ctx)
                updated["state"] = index
                return updated

            flow.declare(f"s{index}", body, after=[f"s{index - 1}"] if index else [])
        started = time.perf_counter()
        result = flow.run({"state": -1, "payload": "nbflow-bench"})
        ended = time.perf_counter()
        if result.phase is not RunPhase.COMPLETED:
            raise RuntimeError(f"nbflow run ended {result.phase.value}")
        final = flow.engine.codec.restore(result.final_snapshot_id or "")
        if final["state"] != n_states - 1:
            raise RuntimeError(f"nbflow run ended in state {final['state']!r}")
        events = flow.home.events.read_range(result.run_id)
        if sum(e.event.kind == "state_completed" for e in events) != n_states:
            raise RuntimeError("nbflow did not record every state")
    marks.append(ended)
    return [b - a for a, b in itertools.pairwise(marks)], ended - started


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * (len(ordered) - 1))))
    return ordered[rank]


def _nbflow_pragmas(workdir: pathlib.Path) -> str:
    with Flow("probe", workdir / ".nbflow") as flow:
        db = flow.home.layout.database
    conn = sqlite3.connect(db)
    try:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    return f"journal_mode={mode}, synchronous=FULL (set on every connection)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--states", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=pathlib.Path, default=None, help="scratch folder")
    args = parser.parse_args()

    from _dbos_workload import run_dbos_workload  # imported late: DBOS is heavy

    nbflow_steps: list[float] = []
    dbos_steps: list[float] = []
    nbflow_totals: list[float] = []
    with tempfile.TemporaryDirectory(prefix="nbflow-bench-", dir=args.dir) as scratch:
        root = pathlib.Path(scratch)
        print(f"nbflow sqlite: {_nbflow_pragmas(root / 'probe')}")
        run_nbflow_workload(5, root / "warmup")
        for round_index in range(args.rounds):
            steps, total = run_nbflow_workload(args.states, root / f"nbflow-{round_index}")
            nbflow_steps += steps
            nbflow_totals.append(total)
            dbos_steps += run_dbos_workload(args.states, root / f"dbos-{round_index}")
            print(
                f"round {round_index + 1}: nbflow p50 {_percentile(steps, 0.5) * 1e3:.3f} ms,"
                f" DBOS p50 {_percentile(dbos_steps[-args.states :], 0.5) * 1e3:.3f} ms"
            )

    print()
    print(
        f"{'tool':<8} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}"
        f"   ({args.states} states x {args.rounds} rounds)"
    )
    for name, steps in (("nbflow", nbflow_steps), ("DBOS", dbos_steps)):
        print(
            f"{name:<8} {_percentile(steps, 0.5) * 1e3:8.3f} {_percentile(steps, 0.95) * 1e3:8.3f}"
            f" {statistics.fmean(steps) * 1e3:8.3f}"
        )
    print(
        f"nbflow run of {args.states} states, median total:"
        f" {statistics.median(nbflow_totals):.3f} s"
    )
    ratio = _percentile(dbos_steps, 0.5) / _percentile(nbflow_steps, 0.5)
    print(f"overhead ratio vs DBOS: {ratio:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
