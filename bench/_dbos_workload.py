"""DBOS Transact comparison workload for the per-state overhead benchmark.

One DBOS workflow runs ``n_states`` trivial ``@DBOS.step`` calls in sequence against a
SQLite system database. Each step takes a small context dict and returns a copy with one
key updated, so what is measured is DBOS's own overhead: the replay check, pickling the
output, and the durable write of the step's result.

Measurement: each duration is taken with ``time.perf_counter()`` immediately around the
step call inside the workflow body, so it covers DBOS's ``check_operation_execution`` read,
the step body, serialization of the output, and ``record_operation_result``'s committed
transaction. Workflow start/finish bookkeeping (the ``workflow_status`` insert and the final
status update) is outside the per-step numbers.

SQLite settings (dbos 3.4.0, ``dbos/_sys_db_sqlite.py``): DBOS builds a SQLAlchemy engine
from ``system_database_url`` (``sqlite:///<absolute path>``) and, on connect, sets the
pysqlite ``isolation_level = "IMMEDIATE"``, ``PRAGMA busy_timeout=30000`` and
``PRAGMA foreign_keys=ON``. It sets neither ``journal_mode`` nor ``synchronous``, so
SQLite's defaults apply: ``journal_mode=delete`` (rollback journal, not WAL) and
``synchronous=2`` (FULL). Each step result is written in its own ``engine.begin()``
transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``), i.e. one durable commit per step.
``sqlite_pragmas()`` reads both values back over DBOS's own connection.

This module leaves every DBOS durability setting as shipped. It only sets the log level to
WARNING so DBOS's INFO logs do not pollute benchmark output.
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import tempfile
import time
import uuid
from typing import Any

import sqlalchemy as sa
from dbos import DBOS, DBOSConfig, SetWorkflowID

_SYSTEM_DB_FILENAME = "dbos_system.sqlite"
_WARMUP_STATES = 5

# Filled in by the workflow body. A module-level sink keeps the timings out of the
# workflow's recorded inputs/outputs, so they do not change what DBOS writes.
_step_durations: list[float] = []


@DBOS.step(name="nbflow_bench_trivial_step")
def _trivial_step(ctx: dict[str, Any], index: int) -> dict[str, Any]:
    """Return ``ctx`` with one key updated; DBOS records the returned dict durably."""
    updated = dict(ctx)
    updated["state"] = index
    return updated


@DBOS.workflow(name="nbflow_bench_chain_workflow")
def _chain_workflow(n_states: int) -> dict[str, Any]:
    ctx: dict[str, Any] = {"state": -1, "payload": "nbflow-bench"}
    for index in range(n_states):
        start = time.perf_counter()
        ctx = _trivial_step(ctx, index)
        _step_durations.append(time.perf_counter() - start)
    return ctx


def _config(workdir: pathlib.Path) -> DBOSConfig:
    db_path = (workdir / _SYSTEM_DB_FILENAME).resolve()
    return {
        "name": "nbflow-bench-dbos",
        # Four slashes in total for an absolute path: sqlite:////abs/path.sqlite
        "system_database_url": f"sqlite:///{db_path}",
        "log_level": "WARNING",
    }


def _run_workflow(n_states: int) -> tuple[list[float], float]:
    """Run one workflow of ``n_states`` steps; return (per-step durations, workflow wall)."""
    _step_durations.clear()
    workflow_id = f"nbflow-bench-{uuid.uuid4()}"
    start = time.perf_counter()
    with SetWorkflowID(workflow_id):
        result = _chain_workflow(n_states)
    total = time.perf_counter() - start
    durations = list(_step_durations)
    _step_durations.clear()

    # Sanity checks: the workflow really ran every step and DBOS recorded each one.
    if n_states > 0 and result["state"] != n_states - 1:
        raise RuntimeError(f"DBOS workflow returned unexpected state {result['state']!r}")
    if len(durations) != n_states:
        raise RuntimeError(f"expected {n_states} step timings, got {len(durations)}")
    recorded = DBOS.list_workflow_steps(workflow_id, load_output=False)
    if len(recorded) != n_states:
        raise RuntimeError(f"DBOS recorded {len(recorded)} steps, expected {n_states}")
    return durations, total


def _run(n_states: int, workdir: pathlib.Path) -> tuple[list[float], float, dict[str, str]]:
    """Launch DBOS, warm up, measure, destroy. Returns (durations, total_s, pragmas)."""
    workdir.mkdir(parents=True, exist_ok=True)
    instance = DBOS(config=_config(workdir))
    try:
        DBOS.launch()
        pragmas = _sqlite_pragmas(instance)
        _run_workflow(_WARMUP_STATES)  # warm-up, discarded
        durations, total = _run_workflow(n_states)
    finally:
        # Keep the registry: the module-level workflow/step stay registered for the next call.
        DBOS.destroy()
    return durations, total, pragmas


def _sqlite_pragmas(instance: DBOS) -> dict[str, str]:
    """Read journal_mode/synchronous/busy_timeout over DBOS's own system-database engine."""
    engine = instance._sys_db.engine  # private, but the only handle on DBOS's connections
    values: dict[str, str] = {}
    with engine.connect() as conn:
        for pragma in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys"):
            values[pragma] = str(conn.execute(sa.text(f"PRAGMA {pragma}")).scalar())
        raw = conn.connection.dbapi_connection
        values["isolation_level"] = str(getattr(raw, "isolation_level", None))
    return values


def run_dbos_workload(n_states: int, workdir: pathlib.Path) -> list[float]:
    """Run one DBOS workflow of ``n_states`` trivial steps (one ``@DBOS.step`` per state)
    against a SQLite system database file inside ``workdir``.

    Returns the per-step wall-clock durations in seconds, each measured with
    ``time.perf_counter()`` immediately around the step call inside the workflow body
    (replay check + step body + output serialization + the step's committed write). A
    warm-up workflow of a few steps runs first and is excluded. DBOS is launched at the
    start and destroyed at the end, so the function can be called repeatedly in one process.
    """
    durations, _total, _pragmas = _run(n_states, workdir)
    return durations


def _percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[rank]


def _main() -> int:
    import dbos  # local: only for the version string

    n_states = 200
    base = pathlib.Path("/work/bench-tmp")  # on the real disk, not tmpfs
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dbos-bench-", dir=base) as tmp:
        durations, total, pragmas = _run(n_states, pathlib.Path(tmp))
    ordered = sorted(durations)
    version = getattr(dbos, "__version__", None) or _dist_version("dbos")
    print(f"dbos {version}; sqlite pragmas via DBOS's engine: {pragmas}")
    print(
        f"{n_states} steps: p50 {_percentile(ordered, 0.50) * 1e3:.3f} ms, "
        f"p95 {_percentile(ordered, 0.95) * 1e3:.3f} ms, "
        f"mean {statistics.fmean(durations) * 1e3:.3f} ms, "
        f"sum of steps {sum(durations):.3f} s, workflow total {total:.3f} s"
    )
    return 0


def _dist_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


if __name__ == "__main__":
    sys.exit(_main())
