"""Big plans in a real kernel: per-state cost of ``%flow run`` as the plan grows, large
pictures, and a long history.

Every kernel is started with jupyter_client in a new temporary notebook folder on the real
disk, with the widgets on (the kernel has ``ipywidgets``; what the frontend would receive is
sent over iopub) and Graphviz's ``dot`` used when it is installed. Timed client-side, from
sending the execute request until the reply and the kernel's idle status have arrived.

* ``%flow run`` of a chain of 25, 100 and 300 trivial states (``x_i = i``), declared in
  declare mode, each size in a fresh kernel and folder; and the same chains through the
  Python API (``nbflow.Flow``, the engine without a kernel), for comparison.
* ``%flow show`` of the 300-state plan after its run; ``%flow timeline`` of a run of
  1,000 attempts (250 chained states, each failing three times before it succeeds).
* A history of 10,000 runs of the notebook (made with ``nbflow.Flow``, the newest one
  interrupted): ``%load_ext nbflow`` in a fresh kernel (nbflow's import included, the
  banner shown), ``%flow runs``, and ``nbflow runs NOTEBOOK`` as a whole process.

Usage: ``python bench/kernel_scale.py [--quick] [--reps N] [--runs N] [--dir DIR]``.
``--quick``: one repetition and 2,000 runs. The last line reads
``kernel scale: <ms> ms per state at 300 states, <x>x the cost at 25`` (goals: at most
10 ms, and at most 1.5x).
"""

from __future__ import annotations

import argparse
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from typing import Any

from kernel_overhead import BenchKernel, kernel_in

from nbflow import Flow
from nbflow.engine import Failpoints

SIZES = (25, 100, 300)
NOTEBOOK = "bench.ipynb"
TIMELINE_STATES = 250
"""States of the timeline's run; each makes four attempts."""

FLAKY_BODY = (
    "import sys\n"
    "sys.nbflow_bench_tries = getattr(sys, 'nbflow_bench_tries', 0) + 1\n"
    "if sys.nbflow_bench_tries % 4:\n"
    "    raise RuntimeError('flaky')\n"
    "y_{i} = {i}"
)
"""A state's code that fails three times out of four (the count lives outside the
namespace, which every retry restores)."""


def declare_chain(kernel: BenchKernel, prefix: str, n: int, body: str, options: str = "") -> None:
    """Declare the chain ``<prefix>0 … <prefix><n-1>``, a cell each, in declare mode;
    ``body`` is the code of state ``i`` with ``{i}`` in it."""
    kernel.execute("%flow mode declare")
    for i in range(n):
        after = f" --after {prefix}{i - 1}" if i else ""
        kernel.execute(f"%%state {prefix}{i}{after}{options}\n{body.format(i=i)}")


def fresh_folder(root: pathlib.Path, label: str) -> pathlib.Path:
    return pathlib.Path(tempfile.mkdtemp(prefix=f"{label}-", dir=root))


def kernel_chain(root: pathlib.Path, n: int) -> tuple[float, float | None]:
    """Seconds of ``%flow run`` of an ``n``-state chain; at 300 states also the seconds of
    ``%flow show`` afterwards."""
    folder = fresh_folder(root, f"chain{n}")
    with kernel_in(folder) as kernel:
        kernel.execute("%load_ext nbflow")
        declare_chain(kernel, "s", n, "x_{i} = {i}")
        run = kernel.execute(f"%flow run s{n - 1}")
        if f"x_{n - 1}" not in kernel.value("sorted(k for k in globals() if k.startswith('x_'))"):
            raise RuntimeError(f"the {n}-state run did not complete:\n{run.stdout}")
        show = kernel.execute("%flow show").seconds if n == max(SIZES) else None
    shutil.rmtree(folder, ignore_errors=True)
    return run.seconds, show


def _step(i: int, context: dict[str, Any]) -> dict[str, Any]:
    return {**context, f"x_{i}": i}


def api_chain(root: pathlib.Path, n: int) -> float:
    """Seconds of ``Flow.run`` of an ``n``-state chain."""
    folder = fresh_folder(root, f"api{n}")
    with Flow("chain", home=folder / ".nbflow") as flow:
        for i in range(n):
            after = [f"s{i - 1}"] if i else []
            flow.declare(f"s{i}", partial(_step, i), after=after, source=f"x_{i} = {i}")
        started = time.perf_counter()
        result = flow.run()
        elapsed = time.perf_counter() - started
        if result.phase.value != "completed":
            raise RuntimeError(f"the {n}-state flow ended {result.phase.value}")
    shutil.rmtree(folder, ignore_errors=True)
    return elapsed


def timeline_of_retries(root: pathlib.Path) -> tuple[float, float]:
    """Seconds of ``%flow run`` of 250 states that each fail three times, and of
    ``%flow timeline`` of that run (1,000 attempts and 750 backoff waits)."""
    folder = fresh_folder(root, "timeline")
    with kernel_in(folder) as kernel:
        kernel.execute("%load_ext nbflow")
        declare_chain(kernel, "t", TIMELINE_STATES, FLAKY_BODY, " --retries 3 --backoff fixed:1ms")
        run = kernel.execute(f"%flow run t{TIMELINE_STATES - 1}", shown_errors=True)
        attempts = kernel.value(
            "sum(type(e.event).__name__ == 'StateEntered' for e in "
            "__nbflow__.session.home.events.read_range("
            "__nbflow__.session.home.events.runs(limit=1)[0].run_id))"
        )
        if attempts != str(4 * TIMELINE_STATES):
            raise RuntimeError(f"expected {4 * TIMELINE_STATES} attempts, found {attempts}")
        timeline = kernel.execute("%flow timeline").seconds
    shutil.rmtree(folder, ignore_errors=True)
    return run.seconds, timeline


def _noop(context: dict[str, Any]) -> dict[str, Any]:
    return context


def make_history(folder: pathlib.Path, runs: int) -> float:
    """``runs`` runs of the notebook's flow in ``folder``, the newest interrupted; seconds."""
    started = time.perf_counter()
    with Flow(NOTEBOOK, home=folder / ".nbflow") as flow:
        flow.declare("step", _noop, source="pass")
        for _ in range(runs - 1):
            flow.run(fresh=True, cache=False)
    failpoints = Failpoints(stop_after_body_once=True)
    with Flow(NOTEBOOK, home=folder / ".nbflow", failpoints=failpoints) as flow:
        flow.declare("step", _noop, source="pass")
        flow.run(fresh=True, cache=False)
    return time.perf_counter() - started


def long_history(root: pathlib.Path, runs: int, reps: int) -> dict[str, float]:
    """Seconds of ``%load_ext nbflow``, ``%flow runs`` and ``nbflow runs`` with ``runs``
    runs in the history (medians of ``reps``)."""
    folder = fresh_folder(root, "history")
    made = make_history(folder, runs)
    loads: list[float] = []
    listings: list[float] = []
    for _ in range(reps):
        with kernel_in(folder) as kernel:
            loads.append(kernel.execute("%load_ext nbflow").seconds)
            listings.append(kernel.execute("%flow runs").seconds)
    command = [str(pathlib.Path(sys.executable).parent / "nbflow"), "runs", NOTEBOOK]
    cli: list[float] = []
    for _ in range(max(5, reps)):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
        cli.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise RuntimeError(f"nbflow runs failed: {done.stderr}")
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "made": made,
        "load": statistics.median(loads),
        "flow_runs": statistics.median(listings),
        "cli": statistics.median(cli),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one repetition, 2,000 runs")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of each figure")
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the long history")
    parser.add_argument("--dir", type=pathlib.Path, default=None, help="parent of the folders")
    args = parser.parse_args(argv)
    reps = 1 if args.quick else max(1, args.reps)
    runs = 2_000 if args.quick else args.runs
    if runs < 1:
        parser.error("--runs must be at least 1")
    base = args.dir or pathlib.Path(__file__).parent / "results"
    base.mkdir(parents=True, exist_ok=True)
    root = pathlib.Path(tempfile.mkdtemp(prefix="kernel-scale-", dir=base))
    dot = shutil.which("dot")
    print(
        f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
        f"Graphviz dot: {dot or 'not installed (built-in layout)'}; {reps} repetition(s)"
    )
    try:
        kernel: dict[int, list[float]] = {n: [] for n in SIZES}
        api: dict[int, list[float]] = {n: [] for n in SIZES}
        shows: list[float] = []
        for _ in range(reps):
            for n in SIZES:
                seconds, show = kernel_chain(root, n)
                kernel[n].append(seconds)
                if show is not None:
                    shows.append(show)
                api[n].append(api_chain(root, n))
        print("\nchain of trivial states    %flow run (kernel)        Flow.run (Python API)")
        per_state: dict[int, float] = {}
        for n in SIZES:
            k, a = statistics.median(kernel[n]), statistics.median(api[n])
            per_state[n] = k / n * 1000
            print(
                f"  {n:>4} states              {k:7.2f} s {per_state[n]:7.2f} ms/state"
                f"    {a:7.2f} s {a / n * 1000:7.2f} ms/state"
            )
        run_seconds, timeline = timeline_of_retries(root)
        print(
            f"\n%flow show, {max(SIZES)}-state plan: {statistics.median(shows):.3f} s"
            f"\n%flow timeline, {4 * TIMELINE_STATES} attempts: {timeline:.3f} s "
            f"(the run itself took {run_seconds:.2f} s)"
        )
        history = long_history(root, runs, reps)
        print(
            f"\nhistory of {runs:,} runs (made in {history['made']:.1f} s):"
            f"\n  %load_ext nbflow (import and banner)  {history['load']:.3f} s"
            f"\n  %flow runs                            {history['flow_runs']:.3f} s"
            f"\n  nbflow runs {NOTEBOOK} (whole process) {history['cli']:.3f} s"
        )
        largest, smallest = max(SIZES), min(SIZES)
        print(
            f"kernel scale: {per_state[largest]:.2f} ms per state at {largest} states, "
            f"{per_state[largest] / per_state[smallest]:.2f}x the cost at {smallest}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
