"""The cache on a ten-state notebook with 1 GB of data: unchanged re-runs, and an edit.

A notebook of ten states in a chain: ``s01`` makes ``data`` (1 GB of float64 by
default), and each state ``sK`` computes ``rK`` from ``data`` and ``r(K-1)``. Each state
does the same calibrated amount of NumPy work, about 2 s, so that the states compute for
about 20 s in all. In one run of this script, on the real disk:

* **nbflow, in a kernel** (``%flow run``, the daily re-run): the first run; the same run
  again, unchanged; the run after editing state 8 (its result changes, so 8, 9 and 10
  must run again); and "Run All" in a fresh kernel of the unchanged notebook.
* **nbflow run**, headless: the same three runs as whole commands, kernel start included.
* **joblib.Memory**, the cache data scientists reach for: the same ten computations as
  plain cells wrapped in ``Memory.cache``, first run, unchanged re-run, edit of state 8.
  joblib hashes every argument on every call, so each re-run hashes the 1 GB again.

Inside the kernel every cache key computation (``KernelCache.key``) is timed. The ratios
are of wall times measured in this run. Usage: ``python bench/cache.py [--gb 1] [--work-s 2]
[--quick] [--no-peers] [--dir DIR]``; ``--quick`` uses 20 MB and 0.1 s per state. The last
line reads ``cache: unchanged rerun <x>x faster, edit of state 8 executes <n> states``: the
in-kernel unchanged re-run against the first run, and the states the edited run executed.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

import nbformat
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from kernel_overhead import BenchKernel, kernel_in

STATES = 10
EDITED = 8
LOG = "executed.log"

WORK = """\
import numpy as np

def work(data, k, reps, previous):
    chunk = data[: 1 << 20]
    total = previous
    for step in range(reps):
        total += float(np.dot(chunk, chunk)) * 1e-12 + k + step % 3
    return total
"""
"""The computation of every state: ``reps`` dot products of a 8 MB slice of ``data``."""

KEY_TIMER = """\
def __nbflow_bench_keyed__(key, calls):
    import time
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return key(*args, **kwargs)
        finally:
            calls.append(time.perf_counter() - started)
    return timed
__nbflow_bench_keys__ = []
__nbflow__.session.cache_policy.key = __nbflow_bench_keyed__(
    __nbflow__.session.cache_policy.key, __nbflow_bench_keys__
)
del __nbflow_bench_keyed__
"""
"""Times every cache key the kernel computes, kept under a dunder name (never snapshotted)."""


def calibrate(seconds: float) -> int:
    """How many repetitions of :data:`WORK`'s step take ``seconds`` here."""
    scope: dict[str, object] = {}
    exec(WORK, scope)  # the bench's own code
    work = scope["work"]
    data = np.ones(1 << 20)
    reps = 200
    while True:
        started = time.perf_counter()
        work(data, 1, reps, 0.0)  # type: ignore[operator]
        took = time.perf_counter() - started
        if took > 0.2:
            return max(1, round(reps * seconds / took))
        reps *= 4


def state_code(index: int, elements: int, edited: bool) -> str:
    name = f"s{index:02d}"
    lines = [f"open({LOG!r}, 'a').write('{name}\\n')"]
    if index == 1:
        lines.append(f"data = np.random.default_rng(0).standard_normal({elements})")
        lines.append("r01 = work(data, 1, REPS, 0.0)")
    else:
        bump = " + 0.5" if edited and index == EDITED else ""
        lines.append(f"r{index:02d} = work(data, {index}, REPS, r{index - 1:02d}){bump}")
    return "\n".join(lines)


def nbflow_cells(elements: int, reps: int, edited: bool) -> list[str]:
    cells = [WORK + f"REPS = {reps}\n"]
    for index in range(1, STATES + 1):
        after = f" --after s{index - 1:02d}" if index > 1 else ""
        code = state_code(index, elements, edited)
        cells.append(f"%%state s{index:02d}{after}\n{code}")
    cells.append(f"print('result', r{STATES:02d})")
    return cells


def joblib_cells(elements: int, reps: int, edited: bool, cache_dir: pathlib.Path) -> list[str]:
    cells = [
        WORK + f"REPS = {reps}\n"
        f"from joblib import Memory\nmemory = Memory({str(cache_dir)!r}, verbose=0)\n"
        f"cached_work = memory.cache(work)\n"
        "def make_data(n):\n"
        f"    open({LOG!r}, 'a').write('s01\\n')\n"
        "    return np.random.default_rng(0).standard_normal(n)\n"
        "cached_data = memory.cache(make_data)\n"
    ]
    for index in range(1, STATES + 1):
        if index == 1:
            cells.append(f"data = cached_data({elements})\nr01 = cached_work(data, 1, REPS, 0.0)")
            continue
        bump = " + 0.5" if edited and index == EDITED else ""
        cells.append(f"r{index:02d} = cached_work(data, {index}, REPS, r{index - 1:02d}){bump}")
    cells.append(f"print('result', r{STATES:02d})")
    return cells


def logged(folder: pathlib.Path) -> list[str]:
    path = folder / LOG
    return path.read_text().split() if path.exists() else []


@dataclass
class Trial:
    """One run of the notebook: its wall time and the states it executed."""

    label: str
    seconds: float
    executed: list[str] = field(default_factory=list)
    result: str = ""


def run_cells(kernel: BenchKernel, cells: list[str], folder: pathlib.Path, label: str) -> Trial:
    before = len(logged(folder))
    started = time.perf_counter()
    output = ""
    for cell in cells:
        output = kernel.execute(cell).stdout
    took = time.perf_counter() - started
    return Trial(label, took, logged(folder)[before:], output.strip())


def nbflow_in_kernel(folder: pathlib.Path, elements: int, reps: int) -> list[Trial]:
    """Declare the plan, ``%flow run`` it three times (the third after the edit), then
    "Run All" of the unchanged notebook in a fresh kernel."""
    trials = []
    with kernel_in(folder) as kernel:
        kernel.execute("%load_ext nbflow")
        kernel.execute(KEY_TIMER)
        kernel.execute("%flow mode declare")
        for cell in nbflow_cells(elements, reps, edited=False)[:-1]:
            kernel.execute(cell)
        trials.append(run_cells(kernel, ["%flow run", "print(r10)"], folder, "first run"))
        trials.append(run_cells(kernel, ["%flow run", "print(r10)"], folder, "unchanged"))
        edited = nbflow_cells(elements, reps, edited=True)
        kernel.execute(edited[EDITED])  # the edited cell, declared again
        trials.append(run_cells(kernel, ["%flow run", "print(r10)"], folder, "edit of 8"))
        keys = json.loads(kernel.value("__import__('json').dumps(__nbflow_bench_keys__)"))
    with kernel_in(folder) as fresh:  # Run All after a restart of the edited notebook
        fresh.execute("%load_ext nbflow")
        trials.append(run_cells(fresh, edited, folder, "Run All, new kernel"))
    trials.append(Trial("key ms", statistics.median(keys) * 1000 if keys else 0.0))
    trials[-1].executed = [f"{max(keys) * 1000:.2f}" if keys else "0", str(len(keys))]
    return trials


def write_notebook(path: pathlib.Path, cells: list[str]) -> None:
    notebook = nbformat.v4.new_notebook(  # type: ignore[no-untyped-call]
        cells=[nbformat.v4.new_code_cell(c) for c in cells]  # type: ignore[no-untyped-call]
    )
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]


def nbflow_headless(folder: pathlib.Path, elements: int, reps: int) -> list[Trial]:
    """``nbflow run`` as whole commands: first run, unchanged, after the edit."""
    path = folder / "chain.ipynb"
    trials = []
    for label, edited in (("first run", False), ("unchanged", False), ("edit of 8", True)):
        write_notebook(path, nbflow_cells(elements, reps, edited))
        before = len(logged(folder))
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "nbflow.cli", "run", str(path)],
            cwd=folder,
            check=True,
            capture_output=True,
            env={k: v for k, v in os.environ.items() if k != "NBFLOW_HOME"},
        )
        trials.append(Trial(label, time.perf_counter() - started, logged(folder)[before:]))
    return trials


def joblib_in_kernel(folder: pathlib.Path, elements: int, reps: int) -> list[Trial]:
    cache = folder / "joblib-cache"
    trials = []
    with kernel_in(folder) as kernel:
        plain = joblib_cells(elements, reps, False, cache)
        trials.append(run_cells(kernel, plain, folder, "first run"))
        trials.append(run_cells(kernel, plain, folder, "unchanged"))
        edited = joblib_cells(elements, reps, True, cache)
        trials.append(run_cells(kernel, edited, folder, "edit of 8"))
    return trials


def table(title: str, trials: list[Trial]) -> list[str]:
    first = trials[0].seconds
    lines = [title]
    for trial in trials:
        ratio = f"{first / trial.seconds:7.1f}x" if trial.seconds else "      -"
        executed = ",".join(trial.executed) if trial.executed else "-"
        lines.append(f"  {trial.label:<20} {trial.seconds:8.2f} s  {ratio}  executed: {executed}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--gb", type=float, default=1.0, help="size of the data, in GB")
    parser.add_argument("--work-s", type=float, default=2.0, help="compute of each state, s")
    parser.add_argument("--quick", action="store_true", help="20 MB, 0.1 s of work per state")
    parser.add_argument("--no-peers", action="store_true", help="nbflow only (no joblib)")
    parser.add_argument("--no-headless", action="store_true", help="skip the nbflow run part")
    parser.add_argument("--dir", type=pathlib.Path, default=None, help="parent of the folders")
    args = parser.parse_args(argv)
    gb, work_s = (0.02, 0.1) if args.quick else (args.gb, args.work_s)
    elements = int(gb * 1e9 / 8)
    reps = calibrate(work_s)
    report = [
        f"nbflow cache bench: {STATES} states, {gb:g} GB of data, ~{work_s:g} s of work each "
        f"({reps} steps), Python {platform.python_version()}, {os.cpu_count()} cores",
    ]
    folders: list[pathlib.Path] = []

    def scratch(kind: str) -> pathlib.Path:
        folders.append(pathlib.Path(tempfile.mkdtemp(prefix=f"nbflow-cache-{kind}-", dir=args.dir)))
        return folders[-1]

    try:
        kernel = nbflow_in_kernel(scratch("kernel"), elements, reps)
        *runs, keys = kernel
        report += table("nbflow, %flow run in a kernel:", runs)
        report.append(
            f"  cache key: median {keys.seconds:.2f} ms, max {keys.executed[0]} ms "
            f"over {keys.executed[1]} keys (with the {gb:g} GB namespace)"
        )
        if not args.no_headless:
            headless = nbflow_headless(scratch("cli"), elements, reps)
            report += table(
                "nbflow run NOTEBOOK (whole commands, kernel start included):", headless
            )
        if not args.no_peers:
            peer = joblib_in_kernel(scratch("joblib"), elements, reps)
            report += table("joblib.Memory, the same cells re-executed in a kernel:", peer)
            report.append(
                f"  nbflow's unchanged re-run is {peer[1].seconds / runs[1].seconds:.1f}x faster "
                f"than joblib's; after the edit, {peer[2].seconds / runs[2].seconds:.1f}x"
            )
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    speedup = runs[0].seconds / runs[1].seconds
    report.append(
        f"cache: unchanged rerun {speedup:.1f}x faster, edit of state {EDITED} executes "
        f"{len(runs[2].executed)} states"
    )
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
