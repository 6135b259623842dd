"""Parallel branches in a real kernel: sequential, the local pool and a Dask LocalCluster.

A kernel is started with jupyter_client in a temporary notebook folder, ``%load_ext
nbflow`` loaded and the states declared (``%flow mode declare``). Each run is one
``%flow run --fresh --no-cache`` cell, timed client-side from the execute request to the
kernel's reply:

* **diamond**: ``a``, then ``b`` and ``c`` that each burn ``--burn`` seconds of CPU, then
  ``d`` (which reads both); sequential, ``--parallel 2`` and ``--parallel 2 --dask local``;
* **fan-out**: six states with no upstream that each sleep ``--sleep`` seconds;
  sequential, ``--parallel 6`` and ``--parallel 6 --dask local``.

The first parallel run of each executor starts it (its cold start, reported on its own);
the runs compared are the ones after, with the workers warm, medians of ``--reps``.

Also measured: the **cold start** of the local pool (a fork server that has imported nbflow,
IPython and the snapshot machinery, and ``N`` workers answering) against a ``spawn`` pool of
``N`` workers importing the same modules, which is what a pool without the fork server
costs; the **per-branch overhead**: a chain of ``--chain`` empty states run with
``--parallel 2`` (one branch at a time), the time from a branch's ``StateEntered`` to its
``StateCompleted`` (restore the base, run, capture the outputs, return, record), median;
against Dask's own per-task overhead, the round trip of an empty task on the same
LocalCluster (``client.submit(f).result()``), median of 200.

Usage: ``python bench/parallel.py [--reps 3] [--burn 2] [--sleep 1] [--chain 30]``.
The last line reads ``parallel: diamond <x>x, fan-out <y>x, branch overhead <ms> ms``:
local pool over sequential wall time, and the median per-branch overhead.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import pathlib
import platform
import queue
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

from jupyter_client.manager import KernelManager

TIMEOUT_S = 600.0


class Kernel:
    """One kernel in ``folder``; cells timed client-side."""

    def __init__(self, folder: pathlib.Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "NBFLOW_HOME"}
        env["JPY_SESSION_NAME"] = str(folder / "bench.ipynb")
        env["NBFLOW_TEXT"] = "1"
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(cwd=str(folder), env=env)
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def run(self, code: str) -> tuple[float, str]:
        """Execute ``code``; seconds until the reply, and what it printed."""
        started = time.perf_counter()
        msg_id = self.client.execute(code, allow_stdin=False)
        text = []
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=TIMEOUT_S)
            except queue.Empty as exc:
                raise TimeoutError(code) from exc
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                text.append(content["text"])
            elif kind == "error":
                raise RuntimeError(f"{code!r}: {content['ename']}: {content['evalue']}")
            elif kind == "status" and content["execution_state"] == "idle":
                break
        return time.perf_counter() - started, "".join(text)

    def value(self, expression: str) -> str:
        return self.run(f"print({expression})")[1].strip()

    def close(self) -> None:
        pid = getattr(self.manager.provisioner, "process", None)
        children = _descendants(pid.pid) if pid is not None else []
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, 9)


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in map(int, children):
            found += [child, *_descendants(child)]
    return found


def declare(kernel: Kernel, burn: float, sleep: float, chain: int) -> None:
    kernel.run("%load_ext nbflow")
    kernel.run("%flow mode declare")
    kernel.run(
        "%%state a\nimport time, os\n"
        "def burn(seconds):\n"
        "    until = time.process_time() + seconds\n"
        "    while time.process_time() < until:\n"
        "        pass\n"
        "rows = list(range(1000))"
    )
    kernel.run(f"%%state b --after a\nburn({burn})\nleft = sum(rows)")
    kernel.run(f"%%state c --after a\nburn({burn})\nright = max(rows)")
    kernel.run("%%state d --after b,c\nboth = (left, right)")
    for index in range(6):
        kernel.run(f"%%state f{index}\nimport time\ntime.sleep({sleep})\nslept{index} = True")
    kernel.run("%%state k0\nk0 = 0")
    for index in range(1, chain + 1):
        kernel.run(f"%%state k{index} --after k{index - 1}\npass")


def timed_runs(kernel: Kernel, line: str, reps: int) -> list[float]:
    times = []
    for _ in range(reps):
        took, said = kernel.run(f"%flow run --fresh --no-cache {line}")
        if "failed" in said or "completed" not in said:
            raise RuntimeError(f"%flow run {line} did not complete:\n{said}")
        times.append(took)
    return times


SPANS = """\
def __bench_spans__():
    session = __nbflow__.session
    run = session.home.events.runs(limit=1)[0].run_id
    entered = {}
    spans = []
    for envelope in session.home.events.read_range(run):
        event = envelope.event
        kind = type(event).__name__
        if kind == "StateEntered" and event.state_id != "k0":
            entered[event.state_id] = envelope.at_us
        elif kind == "StateCompleted" and event.state_id in entered:
            spans.append((envelope.at_us - entered[event.state_id]) / 1000)
    return " ".join(str(span) for span in spans)
"""


def branch_overhead_ms(kernel: Kernel, chain: int, dask: bool) -> float:
    """Median StateEntered → StateCompleted of the empty chain's branches (k1..)."""
    line = "--parallel 2" + (" --dask local" if dask else "")
    _, said = kernel.run(f"%flow run --fresh --no-cache {line} k{chain}")
    kernel.run(SPANS)
    spans = [float(v) for v in kernel.value("__bench_spans__()").split()]
    assert len(spans) == chain, said
    return statistics.median(spans)


def pool_cold_start(workers: int) -> tuple[float, float]:
    """Seconds until ``workers`` workers answer: nbflow's pool (new fork server) and a
    ``spawn`` pool importing the same modules."""
    import subprocess

    script = (
        "import time, sys\n"
        "started = time.perf_counter()\n"
        "from nbflow.parallel.local_pool import LocalPool\n"
        f"pool = LocalPool({workers}); pool.start()\n"
        "print(time.perf_counter() - started)\n"
        "pool.close()\n"
    )
    ours = float(
        subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout.split()[-1]
    )
    spawn = (
        "import time, multiprocessing\n"
        "from nbflow.parallel.local_pool import PRELOAD\n"
        "def warm(_):\n"
        "    import importlib\n"
        "    for name in PRELOAD: importlib.import_module(name)\n"
        "    return 1\n"
        "if __name__ == '__main__':\n"
        "    started = time.perf_counter()\n"
        "    context = multiprocessing.get_context('spawn')\n"
        f"    with context.Pool({workers}) as pool:\n"
        f"        pool.map(warm, range({workers}), chunksize=1)\n"
        "        print(time.perf_counter() - started)\n"
    )
    path = pathlib.Path(tempfile.mkdtemp(prefix="nbflow-spawn-")) / "spawn_pool.py"
    path.write_text(spawn)
    theirs = float(
        subprocess.run(
            [sys.executable, str(path)], capture_output=True, text=True, check=True
        ).stdout.split()[-1]
    )
    shutil.rmtree(path.parent)
    return ours, theirs


def dask_task_overhead_ms(samples: int) -> tuple[float, float]:
    """Median round trip of an empty task on a new LocalCluster of 2 workers, and the
    cluster's start time."""
    import distributed

    dist: Any = distributed

    started = time.perf_counter()
    with (
        dist.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        ) as cluster,
        dist.Client(cluster) as client,
    ):
        client.wait_for_workers(2)
        boot = time.perf_counter() - started
        for _ in range(20):
            client.submit(_empty, pure=False).result()
        times = []
        for _ in range(samples):
            began = time.perf_counter()
            client.submit(_empty, pure=False).result()
            times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), boot


def _empty() -> None:
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--burn", type=float, default=2.0)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--chain", type=int, default=30)
    args = parser.parse_args(argv)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    folder = pathlib.Path(tempfile.mkdtemp(prefix="nbflow-parallel-"))
    kernel = Kernel(folder)
    results: dict[str, Any] = {}
    try:
        declare(kernel, args.burn, args.sleep, args.chain)
        diamond = "d"
        fan = " ".join(f"f{i}" for i in range(6))
        results["diamond seq"] = timed_runs(kernel, diamond, args.reps)
        results["diamond local cold"] = timed_runs(kernel, f"--parallel 2 {diamond}", 1)
        results["diamond local"] = timed_runs(kernel, f"--parallel 2 {diamond}", args.reps)
        results["diamond dask cold"] = timed_runs(kernel, f"--parallel 2 --dask local {diamond}", 1)
        results["diamond dask"] = timed_runs(
            kernel, f"--parallel 2 --dask local {diamond}", args.reps
        )
        results["fan seq"] = timed_runs(kernel, fan, args.reps)
        results["fan local cold"] = timed_runs(kernel, f"--parallel 6 {fan}", 1)
        results["fan local"] = timed_runs(kernel, f"--parallel 6 {fan}", args.reps)
        results["fan dask cold"] = timed_runs(kernel, f"--parallel 6 --dask local {fan}", 1)
        results["fan dask"] = timed_runs(kernel, f"--parallel 6 --dask local {fan}", args.reps)
        assert kernel.value("both") == "(499500, 999)", "d saw both branches"
        overhead_local = branch_overhead_ms(kernel, args.chain, dask=False)
        overhead_dask = branch_overhead_ms(kernel, args.chain, dask=True)
    finally:
        kernel.close()
        shutil.rmtree(folder, ignore_errors=True)
    pool_ours, pool_spawn = pool_cold_start(6)
    dask_task, dask_boot = dask_task_overhead_ms(200)

    def med(key: str) -> float:
        return float(statistics.median(results[key]))

    print(f"\ndiamond (b and c burn {args.burn:g} s of CPU each), median of {args.reps}:")
    for label, key in (
        ("sequential", "diamond seq"),
        ("local pool, --parallel 2", "diamond local"),
        ("Dask LocalCluster, --parallel 2", "diamond dask"),
    ):
        print(f"  {label:<34} {med(key):7.2f} s   {med(key) / med('diamond seq'):5.2f}x")
    print(f"fan-out (six states sleep {args.sleep:g} s each), median of {args.reps}:")
    for label, key in (
        ("sequential", "fan seq"),
        ("local pool, --parallel 6", "fan local"),
        ("Dask LocalCluster, --parallel 6", "fan dask"),
    ):
        print(f"  {label:<34} {med(key):7.2f} s   {med(key) / med('fan seq'):5.2f}x")
    print("first parallel run (the executor starts in it):")
    print(
        f"  diamond, local pool {results['diamond local cold'][0]:.2f} s; "
        f"Dask LocalCluster {results['diamond dask cold'][0]:.2f} s"
    )
    print(
        f"cold start of 6 workers: nbflow's pool {pool_ours * 1000:.0f} ms, "
        f"a spawn pool {pool_spawn * 1000:.0f} ms ({pool_spawn / pool_ours:.1f}x slower), "
        f"a Dask LocalCluster of 2 {dask_boot * 1000:.0f} ms"
    )
    print(
        f"per-branch overhead (empty state: restore base, run, capture, return, record): "
        f"local pool {overhead_local:.1f} ms, nbflow on Dask {overhead_dask:.1f} ms; "
        f"Dask's own empty task {dask_task:.1f} ms"
    )
    diamond_ratio = med("diamond local") / med("diamond seq")
    fan_ratio = med("fan local") / med("fan seq")
    print(
        f"parallel: diamond {diamond_ratio:.2f}x, fan-out {fan_ratio:.2f}x, "
        f"branch overhead {overhead_local:.1f} ms"
    )
    return 0


if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
