"""What a ``%%state`` cell costs over the same plain cell, in a real kernel.

A kernel is started with jupyter_client in a temporary notebook folder on the real disk
(history in ``<folder>/.nbflow``, SQLite ``synchronous=FULL``, artifacts fsynced) and
``%load_ext nbflow`` is loaded, in run mode: every state cell declares its state and runs it
as a one-state run, checkpointed. Timed client-side, from sending the execute request until
both the execute reply and the kernel's idle status for it have arrived:

* ``plain``: ``x = 1``;
* ``%%state, same name``: ``%%state s`` + ``x = 1`` executed again and again, as users
  re-run a cell (the headline);
* ``%%state, new name``: ``%%state s<i>`` + ``x = 1``, a new state each time (the plan
  grows to N states).

The kinds are interleaved, in rotating order, after a few warm-up executions of each. Then
a NumPy array (1 GB unless ``--array-mb``) is added to the namespace and left unchanged,
and the three kinds are timed again: the incremental snapshot should keep the array's cost
small. New-name cells are also reported apart by what ran right before them: after a state
cell nothing ran since its checkpoint, so the new state captures once (after its code);
after a plain cell it captures before and after. Inside the kernel every namespace snapshot
(``NamespaceCodec.capture``) is timed, to show how much of the overhead the snapshot is.

Usage: ``python bench/kernel_overhead.py [--cells N] [--quick] [--array-mb MB] [--dir DIR]``.
``--quick`` times 30 cells of each kind. The last line reads
``state cell overhead: <ms> ms; with 1 GB unchanged: <ms> ms``: the median of the
same-name state cell minus the median of the plain cell, in the small namespace and with
the array (goals 15 ms and 60 ms).
"""

from __future__ import annotations

import argparse
import ast
import os
import pathlib
import platform
import queue
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager

BUDGET_MS = 15.0
WARMUP = 5
TIMEOUT_S = 120.0

SNAPSHOT_TIMER = """\
def __nbflow_bench_timed__(capture, calls):
    import time
    shell = get_ipython()
    def timed(*args, **kwargs):
        started = time.perf_counter()
        try:
            return capture(*args, **kwargs)
        finally:
            calls.append((shell.execution_count, time.perf_counter() - started))
    return timed
__nbflow_bench_calls__ = []
__nbflow__.session.snapshots.capture = __nbflow_bench_timed__(
    __nbflow__.session.snapshots.capture, __nbflow_bench_calls__
)
del __nbflow_bench_timed__
"""
"""Wraps the session's snapshot capture in the kernel: ``(execution count, seconds)`` per
capture, kept under a dunder name so that it is never itself snapshotted."""


class CellFailedError(RuntimeError):
    """A timed cell did not succeed."""


@dataclass
class Execution:
    """One executed cell, as seen by the client."""

    seconds: float
    execution_count: int
    stdout: str = ""


@dataclass
class Series:
    """Timings of one kind of cell."""

    label: str
    seconds: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    def add(self, execution: Execution) -> None:
        self.seconds.append(execution.seconds)
        self.counts.append(execution.execution_count)

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def p95_ms(self) -> float:
        return percentile(self.seconds, 0.95) * 1000


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(fraction * (len(ordered) - 1))))
    return ordered[rank]


class BenchKernel:
    """One IPython kernel in ``folder``, as the notebook ``bench.ipynb`` there has."""

    def __init__(self, folder: pathlib.Path) -> None:
        env = {**os.environ, "JPY_SESSION_NAME": str(folder / "bench.ipynb")}
        env.pop("NBFLOW_HOME", None)
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(folder), env=env)
        client = self.manager.client()
        assert isinstance(client, BlockingKernelClient)
        self.client = client
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def execute(self, code: str, *, shown_errors: bool = False) -> Execution:
        """Run ``code``; its wall time from request to reply and idle status. With
        ``shown_errors``, tracebacks it shows (retried attempts) do not fail it."""
        started = time.perf_counter()
        msg_id = self.client.execute(code, allow_stdin=False, stop_on_error=True)
        stdout: list[str] = []
        errors: list[str] = []
        while True:
            message = self._next(self.client.get_iopub_msg)
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                (stdout if content["name"] == "stdout" else errors).append(content["text"])
            elif kind == "error":
                errors.append(f"{content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                break
        while True:
            reply = self._next(self.client.get_shell_msg)
            if reply["parent_header"].get("msg_id") == msg_id:
                break
        elapsed = time.perf_counter() - started
        if reply["content"]["status"] != "ok" or (errors and not shown_errors):
            raise CellFailedError(f"cell failed: {code!r}\n{''.join(errors)}")
        return Execution(elapsed, int(reply["content"]["execution_count"]), "".join(stdout))

    @staticmethod
    def _next(get: Callable[..., dict[str, Any]]) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                return get(timeout=1)
            except queue.Empty:
                continue
        raise TimeoutError(f"no message from the kernel in {TIMEOUT_S} s")

    def value(self, expression: str) -> str:
        """``print(expression)`` in the kernel, as text."""
        return self.execute(f"print({expression})").stdout.strip()

    def close(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)


@contextmanager
def kernel_in(folder: pathlib.Path) -> Iterator[BenchKernel]:
    kernel = BenchKernel(folder)
    try:
        yield kernel
    finally:
        kernel.close()


Cells = dict[str, tuple[str, Callable[[int], str]]]
"""Kind -> (label, code of the i-th cell; i < 0 for warm-up cells)."""


def interleaved(kernel: BenchKernel, kinds: Cells, n: int) -> dict[str, Series]:
    """Warm up, then time ``n`` executions of each kind, in rotating order."""
    series = {kind: Series(label) for kind, (label, _) in kinds.items()}
    order = list(kinds)
    for index in range(WARMUP):
        for kind in order:
            kernel.execute(kinds[kind][1](-1 - index))
    for index in range(n):
        shift = index % len(order)
        for kind in order[shift:] + order[:shift]:
            series[kind].add(kernel.execute(kinds[kind][1](index)))
    return series


def snapshot_seconds(kernel: BenchKernel) -> dict[int, list[float]]:
    """Seconds of each namespace snapshot, per execution count of the replies."""
    probe = kernel.execute("print(get_ipython().execution_count)")
    offset = int(probe.stdout) - probe.execution_count  # the shell's count inside a cell
    calls: list[tuple[int, float]] = ast.literal_eval(kernel.value("__nbflow_bench_calls__"))
    per_cell: dict[int, list[float]] = {}
    for count, seconds in calls:
        per_cell.setdefault(count - offset, []).append(seconds)
    return per_cell


def split_by_predecessor(series: Series, plain: Series) -> tuple[Series, Series]:
    """``series`` split in two: the cells executed right after a state cell, and those
    right after a plain cell (which makes the state capture before its code too)."""
    plain_counts = set(plain.counts)
    after_state = Series("  right after a state")
    after_plain = Series("  right after a plain cell")
    for seconds, count in zip(series.seconds, series.counts, strict=True):
        chosen = after_plain if count - 1 in plain_counts else after_state
        chosen.seconds.append(seconds)
        chosen.counts.append(count)
    return after_state, after_plain


def snapshot_p50_ms(series: Series, per_cell: dict[int, list[float]]) -> float:
    """Median over the cells of ``series`` of the time spent in snapshots."""
    return statistics.median(sum(per_cell.get(count, [])) for count in series.counts) * 1000


def captures(series: Series, per_cell: dict[int, list[float]]) -> int:
    """Median number of snapshots taken per cell of ``series``."""
    return round(statistics.median(len(per_cell.get(count, [])) for count in series.counts))


def row(series: Series, baseline: Series | None = None) -> str:
    text = f"  {series.label:<28} p50 {series.p50_ms:7.2f} ms   p95 {series.p95_ms:7.2f} ms"
    if baseline is not None:
        text += f"   overhead p50 {series.p50_ms - baseline.p50_ms:+7.2f} ms"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--cells", type=int, default=200, help="timed cells of each kind")
    parser.add_argument("--quick", action="store_true", help="30 cells of each kind")
    parser.add_argument("--array-mb", type=int, default=1000, help="size of the big array")
    parser.add_argument("--dir", type=pathlib.Path, default=None, help="parent of the folder")
    args = parser.parse_args(argv)
    n: int = 30 if args.quick else args.cells
    if n < 1:
        parser.error("--cells must be at least 1")
    if args.dir is not None:
        args.dir.mkdir(parents=True, exist_ok=True)
    folder = pathlib.Path(tempfile.mkdtemp(prefix="nbflow-kernel-bench-", dir=args.dir))
    try:
        with kernel_in(folder) as kernel:
            report = measure(kernel, n, args.array_mb, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print("\n".join(report))
    return 0


def measure(kernel: BenchKernel, n: int, array_mb: int, folder: pathlib.Path) -> list[str]:
    loaded = kernel.execute("%load_ext nbflow")
    kernel.execute(SNAPSHOT_TIMER)
    python = kernel.value("__import__('sys').version.split()[0]")
    out = [
        f"nbflow %%state overhead in a real kernel: {n} timed cells of each kind "
        f"(after {WARMUP} warm-up each), interleaved",
        f"python {python} on {platform.machine()}, {os.cpu_count()} CPUs; {loaded.stdout.strip()}",
        "times are client-side, from execute request to reply and idle status",
        "",
        "small namespace:",
    ]
    small = interleaved(
        kernel,
        {
            "plain": ("plain cell (x = 1)", lambda i: "x = 1"),
            "same": ("%%state, same name", lambda i: "%%state s\nx = 1"),
            "new": (
                "%%state, new name each time",
                lambda i: f"%%state s{i}\nx = 1" if i >= 0 else f"%%state warm{-i}\nx = 1",
            ),
        },
        n,
    )
    per_cell = snapshot_seconds(kernel)
    plain, same, new = small["plain"], small["same"], small["new"]
    out += [row(plain), row(same, plain), row(new, plain)]
    headline = same.p50_ms - plain.p50_ms
    small_snapshot = snapshot_p50_ms(same, per_cell)
    out.append(
        f"  snapshots per state cell     p50 {small_snapshot:7.2f} ms (same name), "
        f"{snapshot_p50_ms(new, per_cell):.2f} ms (new name), {captures(same, per_cell)} "
        f"captures per cell; {share(small_snapshot, headline)} of the same-name overhead"
    )

    elements = array_mb * 1_000_000 // 8
    kernel.execute(f"import numpy as np\nbig = np.random.default_rng(0).random({elements})")
    first = kernel.execute("%%state s\nx = 1")
    first_snapshot = sum(snapshot_seconds(kernel).get(first.execution_count, [])) * 1000
    big = interleaved(
        kernel,
        {
            "plain": ("plain cell (x = 1)", lambda i: "x = 1"),
            "same": ("%%state, same name", lambda i: "%%state s\nx = 1"),
            "new": (
                "%%state, new name each time",
                lambda i: f"%%state b{i}\nx = 1" if i >= 0 else f"%%state bwarm{-i}\nx = 1",
            ),
        },
        n,
    )
    per_cell = snapshot_seconds(kernel)
    big_plain, big_same, big_new = big["plain"], big["same"], big["new"]
    after_state, after_plain = split_by_predecessor(big_new, big_plain)
    big_snapshot = snapshot_p50_ms(big_same, per_cell)
    stored = sum(f.stat().st_size for f in (folder / ".nbflow").rglob("*") if f.is_file())
    out += [
        "",
        f"with an unchanged {array_mb} MB NumPy array in the namespace:",
        f"  first %%state with the array {first.seconds * 1000:7.2f} ms "
        f"(snapshot {first_snapshot:.2f} ms: the array hashed and written once)",
        row(big_plain),
        row(big_same, big_plain),
        f"  snapshots per state cell     p50 {big_snapshot:7.2f} ms "
        f"({captures(big_same, per_cell)} captures per cell); "
        f"{big_snapshot - small_snapshot:+.2f} ms over the small namespace; "
        f"{share(big_snapshot, big_same.p50_ms - big_plain.p50_ms)} of the overhead",
        row(big_new, big_plain),
        row(after_state, big_plain) + f"   {captures(after_state, per_cell)} capture(s)",
        row(after_plain, big_plain) + f"   {captures(after_plain, per_cell)} capture(s)",
        f"  history on disk              {stored / 1e6:.1f} MB after "
        f"{3 * (n + WARMUP) + 1} state runs",
        "",
        f"budget {BUDGET_MS:g} ms: {'met' if headline <= BUDGET_MS else 'EXCEEDED'} "
        f"(same name {headline:.2f} ms, new name {new.p50_ms - plain.p50_ms:.2f} ms, "
        f"{array_mb} MB array {big_same.p50_ms - big_plain.p50_ms:.2f} ms)",
        f"state cell overhead: {headline:.2f} ms; with {size_text(array_mb)} unchanged: "
        f"{big_same.p50_ms - big_plain.p50_ms:.2f} ms",
    ]
    return out


def size_text(megabytes: int) -> str:
    """``1 GB`` for 1000 MB, else ``<n> MB``."""
    return f"{megabytes / 1000:g} GB" if megabytes % 1000 == 0 else f"{megabytes} MB"


def share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole > 0 else "n/a"


if __name__ == "__main__":
    sys.exit(main())
