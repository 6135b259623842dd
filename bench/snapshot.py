"""Namespace checkpoints: nbflow's snapshot codec against dill, joblib and pickle.

Namespace (about 0.92 GB): a 512 MB pandas DataFrame (8 float64 columns), a 400 MB NumPy
array, a dict of 100k small records, a list of 1M ints and an int scalar ``step``.

Measured for each tool, each writing files on the same disk and fsyncing them:

* first checkpoint: the namespace to an empty folder, durable;
* after a scalar change: ``step += 1``, then a checkpoint again;
* restore, lazy: load it back (nbflow maps buffers, joblib uses ``mmap_mode="r"``; dill and
  pickle have no lazy mode and read everything);
* restore, fully read: lazy restore plus touching every page of every array.

nbflow's restore verifies every artifact's hash, the others verify nothing. Each figure is
the median of ``--reps`` runs (at least 3). Also measured: raw write+fsync of as many bytes
as nbflow's first checkpoint wrote, and blake3's speed in memory.

Every timed step (each tool's checkpoints and restores, and each raw write) starts right
after touching and freeing 1.5 times as much memory as the namespace's arrays
(``warm_memory``). On a virtual machine whose balloon reports free pages to the host, a
page left free for a few seconds costs a fault in the host when it is used again: writing
912 MB took 2.6 to 3.4 s after a 5 s pause, against 0.55 to 0.63 s right after a free.
Without the warm-up, a figure depended on how long the memory it wrote into (or, for a
restore, read into) had lain free.

Usage: ``python bench/snapshot.py [--quick] [--reps N] [--dir DIR]``. ``--quick`` uses a
namespace ten times smaller. The summary lines are ``incremental vs dill: <x>x``,
``first checkpoint vs raw disk: <p>%`` (after the first checkpoints and the raw writes
run by run, since the page cache's speed varies between runs), ``lazy restore vs dill:
<x>x`` and, last, ``restore vs unpickle floor: <x>x`` (nbflow's lazy restore over
unpickling the objects alone, their buffers left in memory: what no restore of the same
objects can beat).
"""

from __future__ import annotations

import argparse
import gc
import os
import pathlib
import pickle
import shutil
import statistics
import sys
import tempfile
import time
import types
from collections.abc import Callable
from typing import Any

import blake3
import dill
import joblib
import numpy as np
import pandas as pd

from nbflow.snapshot import NamespaceCodec
from nbflow.store import Home

MB = 1_000_000
Timings = dict[str, float]
Measure = Callable[[Callable[[], Any]], tuple[float, Any]]
"""Times a step that starts on warm memory (see ``warm_memory``), as ``timed`` does."""


def build_namespace(scale: float) -> dict[str, Any]:
    """The benchmark namespace, ``scale`` times the full size."""
    rng = np.random.default_rng(7)
    rows = int(8_000_000 * scale)
    frame = pd.DataFrame({f"c{i}": rng.random(rows) for i in range(8)})
    count = int(100_000 * scale)
    return {
        "df": frame,
        "arr": rng.random(int(50_000_000 * scale)),
        "records": {f"k{i}": {"id": i, "name": f"item{i}", "score": i // 2} for i in range(count)},
        "ints": list(range(int(1_000_000 * scale))),
        "step": 0,
    }


def touch(namespace: dict[str, Any]) -> None:
    """Read one byte of every page of every array, as a computation over them would."""
    for value in namespace.values():
        arrays: list[np.ndarray[Any, Any]] = []
        if isinstance(value, np.ndarray):
            arrays.append(value)
        elif isinstance(value, pd.DataFrame):
            arrays.extend(value[column].to_numpy() for column in value.columns)
        for array in arrays:
            flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
            int(flat[::4096].sum())


def warm_memory(nbytes: int) -> None:
    """Touch and free ``nbytes`` and half as much again, so that the timed step that comes
    next fills pages the host still backs (see the module's docstring)."""
    ballast = np.empty(nbytes + nbytes // 2, dtype=np.uint8)
    ballast.fill(1)
    del ballast


def fsync_path(path: pathlib.Path) -> None:
    """Make a file written by a third-party tool durable, as nbflow makes its artifacts."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds taken by ``action`` and what it returned."""
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def folder_size(path: pathlib.Path) -> int:
    """Bytes of every file under ``path``."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run_nbflow(namespace: dict[str, Any], workdir: pathlib.Path, measure: Measure) -> Timings:
    """One round of nbflow: first checkpoint, scalar change, restores."""
    home = Home(workdir / ".nbflow")
    try:
        codec = NamespaceCodec(home.artifacts)
        first, snapshot_id = measure(lambda: codec.capture(namespace))
        written = codec.last_report.bytes_written if codec.last_report else 0
        namespace["step"] += 1
        incremental, snapshot_id = measure(lambda: codec.capture(namespace))
        gc.collect()
        lazy, touched = restore_and_touch(home, snapshot_id, namespace["step"], measure)
        size = folder_size(home.root)
    finally:
        home.close()
    return {
        "first": first,
        "incremental": incremental,
        "lazy": lazy,
        "full": lazy + touched,
        "size": size,
        "written": written,
    }


def restore_and_touch(
    home: Home, snapshot_id: str, step: int, measure: Measure
) -> tuple[float, float]:
    """Seconds of a lazy restore by a fresh codec, and of touching every page after it."""
    lazy, restored = measure(lambda: NamespaceCodec(home.artifacts).restore(snapshot_id))
    assert restored["step"] == step
    touched, _ = timed(lambda: touch(restored))
    return lazy, touched


def run_dill(namespace: dict[str, Any], workdir: pathlib.Path, measure: Measure) -> Timings:
    """One round of ``dill.dump_module``/``load_module`` on a module holding the namespace."""
    module = types.ModuleType("nbflow_bench_namespace")
    module.__dict__.update(namespace)
    sys.modules[module.__name__] = module
    try:

        def dump(path: pathlib.Path) -> None:
            with open(path, "wb") as handle:
                dill.dump_module(handle, module=module)
            fsync_path(path)

        first, _ = measure(lambda: dump(workdir / "first.pkl"))
        module.__dict__["step"] += 1
        incremental, _ = measure(lambda: dump(workdir / "second.pkl"))
        gc.collect()
        load, loaded = measure(lambda: dill.load_module(str(workdir / "second.pkl")))
        touched, _ = timed(lambda: touch(dict(loaded.__dict__)))
        size = (workdir / "second.pkl").stat().st_size
    finally:
        del sys.modules[module.__name__]
    return {
        "first": first,
        "incremental": incremental,
        "lazy": load,
        "full": load + touched,
        "size": size,
    }


def run_joblib(namespace: dict[str, Any], workdir: pathlib.Path, measure: Measure) -> Timings:
    """One round of ``joblib.dump``/``load`` (lazy: ``mmap_mode="r"``)."""

    def dump(path: pathlib.Path) -> None:
        joblib.dump(namespace, path)
        fsync_path(path)

    first, _ = measure(lambda: dump(workdir / "first.joblib"))
    namespace["step"] += 1
    incremental, _ = measure(lambda: dump(workdir / "second.joblib"))
    gc.collect()
    lazy, loaded = measure(lambda: joblib.load(workdir / "second.joblib", mmap_mode="r"))
    _touched, _ = timed(lambda: touch(loaded))
    del loaded
    gc.collect()
    full_load, loaded = measure(lambda: joblib.load(workdir / "second.joblib"))
    full_touch, _ = timed(lambda: touch(loaded))
    return {
        "first": first,
        "incremental": incremental,
        "lazy": lazy,
        "full": full_load + full_touch,
        "size": (workdir / "second.joblib").stat().st_size,
    }


def run_pickle(namespace: dict[str, Any], workdir: pathlib.Path, measure: Measure) -> Timings:
    """One round of ``pickle.dump``/``load`` of the whole dict, protocol 5, in band."""

    def dump(path: pathlib.Path) -> None:
        with open(path, "wb") as handle:
            pickle.dump(namespace, handle, protocol=5)
        fsync_path(path)

    def load(path: pathlib.Path) -> Any:
        with open(path, "rb") as handle:
            return pickle.load(handle)

    first, _ = measure(lambda: dump(workdir / "first.pkl"))
    namespace["step"] += 1
    incremental, _ = measure(lambda: dump(workdir / "second.pkl"))
    gc.collect()
    loaded_time, loaded = measure(lambda: load(workdir / "second.pkl"))
    touched, _ = timed(lambda: touch(loaded))
    return {
        "first": first,
        "incremental": incremental,
        "lazy": loaded_time,
        "full": loaded_time + touched,
        "size": (workdir / "second.pkl").stat().st_size,
    }


def raw_write(source: memoryview, nbytes: int, path: pathlib.Path) -> float:
    """Seconds to write ``nbytes`` (repeating ``source``) to a new file and fsync it."""
    started = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        left = nbytes
        while left:
            chunk = source[: min(left, source.nbytes, 1 << 26)]
            left -= os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - started
    path.unlink()
    return elapsed


def blake3_speed(source: memoryview) -> float:
    """blake3 throughput in bytes per second over ``source``, all cores."""
    elapsed, _ = timed(lambda: blake3.blake3(source, max_threads=blake3.blake3.AUTO).digest())
    return source.nbytes / elapsed


def unpickle_floor(namespace: dict[str, Any]) -> float:
    """Seconds to unpickle the namespace's objects alone: its buffers stay where they are
    in memory (protocol 5, out of band), so no byte of them is read, copied or checked.
    No restore that rebuilds the same objects can be faster."""
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(namespace, protocol=5, buffer_callback=buffers.append)
    gc.disable()
    try:
        started = time.perf_counter()
        pickle.loads(data, buffers=buffers)
        return time.perf_counter() - started
    finally:
        gc.enable()


def pick_dir(requested: str | None) -> pathlib.Path:
    """Where to write: ``--dir``, else ``bench/results`` (on the project's disk, never a
    RAM-backed /tmp, which would flatter every figure)."""
    base = pathlib.Path(requested) if requested else pathlib.Path(__file__).parent / "results"
    base.mkdir(parents=True, exist_ok=True)
    return pathlib.Path(tempfile.mkdtemp(prefix="snapshot-", dir=base))


def main() -> None:
    """Run the benchmark and print the table and the three summary lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a namespace ten times smaller")
    parser.add_argument("--reps", type=int, default=3, help="runs per figure (at least 3)")
    parser.add_argument("--dir", help="folder to write in (default: bench/results)")
    args = parser.parse_args()
    reps = max(3, args.reps)
    root = pick_dir(args.dir)
    try:
        namespace = build_namespace(0.1 if args.quick else 1.0)
        arr = namespace["arr"]
        source = memoryview(arr).cast("B")
        nbytes = int(arr.nbytes + namespace["df"].memory_usage(index=False).sum())
        print(f"namespace: {nbytes / MB:,.0f} MB of arrays, {reps} runs each, in {root}")
        raw_write(source, source.nbytes, root / "warmup")  # first page-cache use is slower

        def measure(action: Callable[[], Any]) -> tuple[float, Any]:
            warm_memory(nbytes)
            return timed(action)

        runners: dict[str, Callable[[dict[str, Any], pathlib.Path, Measure], Timings]] = {
            "nbflow": run_nbflow,
            "dill.dump_module": run_dill,
            "joblib": run_joblib,
            "pickle5 (whole dict)": run_pickle,
        }
        results: dict[str, list[Timings]] = {name: [] for name in runners}
        raw: list[float] = []
        hashing: list[float] = []
        floors: list[float] = []
        for rep in range(reps):
            for name, runner in runners.items():
                workdir = root / f"{rep}-{name.split()[0]}"
                workdir.mkdir()
                results[name].append(runner(namespace, workdir, measure))
                shutil.rmtree(workdir)
                gc.collect()
            written = int(results["nbflow"][-1]["written"])
            warm_memory(nbytes)
            raw.append(raw_write(source, written, root / "raw"))
            hashing.append(blake3_speed(source))
            floors.append(unpickle_floor(namespace))

        def median(name: str, key: str) -> float:
            return statistics.median(run[key] for run in results[name])

        header = f"{'tool':<22}{'first ckpt':>12}{'after step+=1':>15}"
        header += f"{'restore lazy':>14}{'restore full':>14}{'on disk':>11}"
        print(header)
        for name in runners:
            print(
                f"{name:<22}{median(name, 'first'):>11.3f}s{median(name, 'incremental'):>14.3f}s"
                f"{median(name, 'lazy'):>13.3f}s{median(name, 'full'):>13.3f}s"
                f"{median(name, 'size') / MB:>8,.0f} MB"
            )
        median_written = statistics.median(run["written"] for run in results["nbflow"])
        raw_time = statistics.median(raw)
        print(
            f"raw write+fsync of {median_written / MB:,.0f} MB: {raw_time:.3f}s "
            f"({median_written / raw_time / 1e9:.2f} GB/s)"
        )
        print(f"blake3, all cores, in memory: {statistics.median(hashing) / 1e9:.2f} GB/s")
        speed = statistics.median(hashing)
        print(
            "nbflow restores verify every artifact's hash, the others verify nothing: "
            f"hashing {median_written / MB:,.0f} MB at {speed / 1e9:.2f} GB/s alone takes "
            f"{median_written / speed:.3f}s"
        )
        print(
            f"incremental vs dill: "
            f"{median('dill.dump_module', 'incremental') / median('nbflow', 'incremental'):.1f}x"
        )
        firsts = ", ".join(f"{run['first']:.2f}" for run in results["nbflow"])
        raws = ", ".join(f"{seconds:.2f}" for seconds in raw)
        print(f"first checkpoints, run by run: {firsts} s; raw write+fsync: {raws} s")
        print(f"first checkpoint vs raw disk: {100 * raw_time / median('nbflow', 'first'):.0f}%")
        floor = statistics.median(floors)
        print(f"unpickling the objects alone (buffers in place): {floor:.3f}s")
        print(
            f"lazy restore vs dill: "
            f"{median('dill.dump_module', 'lazy') / median('nbflow', 'lazy'):.1f}x"
        )
        print(f"restore vs unpickle floor: {median('nbflow', 'lazy') / floor:.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
