"""Damaged storage is detected before use: random damage against every read path.

A small pristine history is built once with the public API: a completed run of a six-state
flow (NumPy arrays stored as out-of-band buffer files, a 50 kB ``bytes`` value pickled in
band into a file, small values inline in the ``blobs`` table) and a run of a second flow
interrupted by ``KeyboardInterrupt`` in its third state. Then, for every trial, the pristine
folder is copied, damaged once, and read back the way a fresh process would:

* ``home.events.runs()``, the runs of each flow, each run's index row and lease;
* each run's events (``read_range``, compared by ``model_dump()``);
* each run's manifest and initial context, and the variables after every completed state
  (``Flow.restore``; arrays compared with ``numpy.array_equal``);
* resuming the interrupted run to the end, and the variables it ends with;
* closing the history.

Damage, one per trial, each kind about equally often: (a) one bit of an artifact file under
``objects/`` flipped; (b) an artifact file truncated; (c) one bit of a row's ``data`` in the
``blobs`` table flipped (through SQLite); (d) one bit of ``nbflow.db`` itself flipped at a
random offset (a page of the database; the copy has no ``-wal`` or ``-shm``).

Each trial is *detected* (an :class:`nbflow.errors.NbflowError` was raised, any code),
*harmless* (every observation equals the pristine one: the damage hit unused space), or
*undetected* (an observation returned a different value without raising). An exception
that is not an ``NbflowError`` (a raw ``sqlite3`` error, a pickle error) is *crashed*.
Observations are independent: one that raises does not hide another that returned a wrong
value, and *undetected* and *crashed* take precedence over *detected*.

Usage: ``python bench/corruption.py [--flips N] [--seed S] [--jobs J] [--dir DIR]
[--pristine DIR] [--trial I]``. ``--trial I`` replays trial ``I`` of ``--seed S`` alone and
prints every observation; with ``--pristine DIR`` (built there if the folder is missing)
the same bytes are damaged again in a later invocation, since run ids and timestamps differ
between builds. Exit status 0 only if nothing was undetected and nothing crashed. The last
line reads ``corruption: <trials> damaged, <detected> detected, <harmless> harmless,
<undetected> undetected``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import multiprocessing
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from nbflow import Flow, NbflowError, RunPhase
from nbflow.engine.contract import read_manifest
from nbflow.model.events import RunStarted, StateCompleted
from nbflow.snapshot import NamespaceCodec
from nbflow.store import HOME_DIRNAME, Home
from nbflow.store.artifacts import INLINE_MAX
from nbflow.store.layout import DB_NAME

FLOW = "bench"
"""The flow whose run completes."""
RESUME_FLOW = "bench-resume"
"""The flow whose run is interrupted, and resumed in every trial."""
KINDS = ("artifact_bit", "artifact_truncate", "blob_bit", "db_bit")
OUTCOMES = ("detected", "harmless", "undetected", "crashed")
ARRAY_ITEMS = 25_000
"""float64 items of the large arrays: 200 kB, an out-of-band buffer kept as a file."""
PAYLOAD_BYTES = 50_000
"""A ``bytes`` value pickled in band: a slice kept as a file."""

Context = dict[str, Any]
Body = Callable[[Context], Context]


# -- the pristine history ------------------------------------------------------------------


def _array(seed: int, items: int = ARRAY_ITEMS) -> np.ndarray[Any, Any]:
    return np.random.default_rng(seed).random(items)


def _payload() -> bytes:
    return bytes((i * 7 + i // 251) % 256 for i in range(PAYLOAD_BYTES))


def _load(ctx: Context) -> Context:
    return {**ctx, "samples": _array(1)}


def _configure(ctx: Context) -> Context:
    return {**ctx, "label": "corruption bench", "factor": 3, "tags": ["a", "b", "c"]}


def _attach(ctx: Context) -> Context:
    return {**ctx, "payload": _payload()}


def _scale(ctx: Context) -> Context:
    return {**ctx, "scaled": ctx["samples"] * ctx["factor"]}


def _summarize(ctx: Context) -> Context:
    stats = {"sum": float(ctx["scaled"].sum()), "n": len(ctx["scaled"]), "ok": True}
    return {**ctx, "stats": stats, "digest": ctx["payload"][:32]}


def _finish(ctx: Context) -> Context:
    return {**ctx, "done": True, "factor": ctx["factor"] + 1}


MAIN_STATES: tuple[tuple[str, Body], ...] = (
    ("load", _load),
    ("configure", _configure),
    ("attach", _attach),
    ("scale", _scale),
    ("summarize", _summarize),
    ("finish", _finish),
)


def _r_load(ctx: Context) -> Context:
    return {**ctx, "grid": _array(2, ARRAY_ITEMS // 2).reshape(-1, 50)}


def _r_count(ctx: Context) -> Context:
    return {**ctx, "count": int(ctx["grid"].shape[0]), "name": "resumed"}


def _r_mean(ctx: Context) -> Context:
    return {**ctx, "means": ctx["grid"].mean(axis=1)}


def _r_end(ctx: Context) -> Context:
    return {**ctx, "finished": [ctx["count"], ctx["name"]]}


class Interruptible:
    """A state body that raises ``KeyboardInterrupt`` on its first call when armed."""

    def __init__(self, body: Body, *, armed: bool) -> None:
        self.body = body
        self.armed = armed

    def __call__(self, ctx: Context) -> Context:
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt
        return self.body(ctx)


def open_flow(name: str, home: Path, *, interrupt: bool = False) -> Flow:
    """The flow ``name`` on ``home`` with its states declared (same manifest every time)."""
    flow = Flow(name, home=home, codec=lambda artifacts: NamespaceCodec(artifacts))
    states: Sequence[tuple[str, Body]] = MAIN_STATES
    if name == RESUME_FLOW:
        states = (
            ("r_load", _r_load),
            ("r_count", _r_count),
            ("r_mean", Interruptible(_r_mean, armed=interrupt)),
            ("r_end", _r_end),
        )
    previous: list[str] = []
    for state, body in states:
        flow.declare(state, body, after=previous, source=f"{name}.{state}")
        previous = [state]
    return flow


def build_pristine(home: Path) -> None:
    """Write the pristine history into ``home`` (a ``.nbflow`` folder)."""
    with open_flow(FLOW, home) as flow:
        result = flow.run()
        if result.phase != RunPhase.COMPLETED:
            raise RuntimeError(f"the pristine run did not complete: {result}")
    with open_flow(RESUME_FLOW, home, interrupt=True) as flow:
        try:
            flow.run()
        except KeyboardInterrupt:
            pass
        else:
            raise RuntimeError("the pristine resume flow was not interrupted")
    for suffix in ("-wal", "-shm", "-journal"):
        leftover = home / (DB_NAME + suffix)
        if leftover.exists():
            raise RuntimeError(f"closing the history left {leftover} behind (not checkpointed)")
    _check_tiers(home)


def _check_tiers(home: Path) -> None:
    """Refuse a history that does not exercise every storage tier the bench damages."""
    with Home(home) as opened:
        files = [a for a in opened.artifacts.ids() if opened.artifacts.is_file(a)]
        inline = [a for a in opened.artifacts.ids() if not opened.artifacts.is_file(a)]
        sizes = [opened.artifacts.size(a) for a in files]
    if len(files) < 4 or not inline or min(sizes) <= INLINE_MAX:
        raise RuntimeError(f"unexpected storage layout: {len(files)} files, {len(inline)} blobs")


# -- observations --------------------------------------------------------------------------


@dataclass(frozen=True)
class Failed:
    """An observation that raised."""

    error: BaseException

    @property
    def nbflow(self) -> bool:
        return isinstance(self.error, NbflowError)

    def describe(self) -> str:
        if isinstance(self.error, NbflowError):
            return f"NbflowError[{self.error.code}]"
        return f"{type(self.error).__module__}.{type(self.error).__qualname__}: {self.error}"


Observations = dict[str, Any]
"""Observation name -> its value, or :class:`Failed`."""


def _detach(value: Any) -> Any:
    """``value`` with arrays copied out of their memory maps (pristine values outlive
    the folder they were read from)."""
    if isinstance(value, np.ndarray):
        return np.array(value, copy=True)
    if isinstance(value, dict):
        return {k: _detach(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_detach(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_detach(v) for v in value)
    return value


def same(a: Any, b: Any) -> bool:
    """Deep equality; arrays equal in dtype, shape and every element."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.array_equal(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


class Observer:
    """Runs named observations, recording each value or the exception it raised."""

    def __init__(self, detach: bool) -> None:
        self.values: Observations = {}
        self._detach = detach

    def __call__(self, name: str, read: Callable[[], Any]) -> Any:
        try:
            value = read()
        except Exception as exc:  # recorded and classified by the caller
            self.values[name] = Failed(exc)
            return None
        self.values[name] = _detach(value) if self._detach else value
        return value


@dataclass(frozen=True)
class Layout:
    """The runs of the pristine history and what each holds."""

    main_run: str
    resume_run: str
    completed: dict[str, tuple[str, ...]]
    """Run id -> states completed in it."""


def observe(home: Path, layout: Layout, *, pristine: bool = False) -> Observations:
    """Everything a fresh process could read from ``home``, then resume the interrupted run
    (which writes: ``home`` must be a copy)."""
    seen = Observer(detach=pristine)
    flow: Flow | None = seen("open", lambda: open_flow(RESUME_FLOW, home))
    if flow is None:
        return seen.values
    seen.values["open"] = None  # compared as "it opened", not as the object
    try:
        _read_everything(flow, layout, seen)
        seen("resume", lambda: _resume(flow, layout.resume_run))
    finally:
        seen("close", flow.close)
    return seen.values


def _read_everything(flow: Flow, layout: Layout, seen: Observer) -> None:
    events = flow.home.events
    seen("runs", events.runs)
    for name in (FLOW, RESUME_FLOW):
        seen(f"runs[{name}]", partial(events.runs, flow_id=name))
    for run_id, states in layout.completed.items():
        run = run_id[:8]
        seen(f"run[{run}]", partial(events.run, run_id))
        seen(f"lease[{run}]", partial(flow.home.leases.lease, run_id))
        stream = seen(f"events[{run}]", partial(events.read_range, run_id))
        if stream is not None:
            seen.values[f"events[{run}]"] = [envelope.model_dump() for envelope in stream]
        # A stream that differs from the pristine one is already an observation that
        # differs; the documents its RunStarted names are read only when it has one.
        started = stream[0].event if stream else None
        if isinstance(started, RunStarted):
            seen(f"manifest[{run}]", partial(_manifest, flow, started.manifest_id))
            seen(f"initial[{run}]", partial(flow.engine.codec.restore, started.initial_snapshot_id))
        for state in states:
            seen(f"restore[{run}:{state}]", partial(flow.restore, state, run_id))


def _manifest(flow: Flow, manifest_id: str) -> dict[str, Any]:
    return read_manifest(flow.home.artifacts, manifest_id).model_dump()


def _resume(flow: Flow, run_id: str) -> tuple[str, Any]:
    result = flow.resume(run_id)
    if result.final_snapshot_id is None:
        return result.phase.value, None
    return result.phase.value, flow.engine.codec.restore(result.final_snapshot_id)


def pristine_layout(home: Path) -> Layout:
    """The run ids of the pristine history, and the states each completed."""
    with Home(home) as opened:
        runs = {r.flow_id: r.run_id for r in opened.events.runs()}
        completed = {}
        for run_id in runs.values():
            stream = opened.events.read_range(run_id)
            completed[run_id] = tuple(
                e.event.state_id for e in stream if isinstance(e.event, StateCompleted)
            )
    return Layout(runs[FLOW], runs[RESUME_FLOW], completed)


# -- damage --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Damage:
    """One damage done to a copy of the history."""

    kind: str
    target: str
    """The file (relative to the ``.nbflow`` folder) or the blob id."""
    offset: int
    """Byte offset of the flipped bit, or the length the file was cut to."""
    bit: int | None = None
    size: int = 0
    """Size of the file or blob before the damage."""

    def describe(self) -> str:
        if self.kind == "artifact_truncate":
            return f"{self.kind}: {self.target} cut from {self.size} to {self.offset} bytes"
        where = f"blobs[{self.target}].data" if self.kind == "blob_bit" else self.target
        page = f" (page {self.offset // 4096 + 1})" if self.kind == "db_bit" else ""
        return f"{self.kind}: bit {self.bit} of byte {self.offset}{page} of {where} ({self.size} B)"


def _artifact_files(home: Path) -> list[Path]:
    return sorted(p for p in (home / "objects").rglob("*") if p.is_file())


def damage(home: Path, rng: random.Random) -> Damage:
    """Apply one random damage to the history in ``home``."""
    kind = rng.choice(KINDS)
    if kind in ("artifact_bit", "artifact_truncate"):
        path = rng.choice(_artifact_files(home))
        data = bytearray(path.read_bytes())
        relative = str(path.relative_to(home))
        if kind == "artifact_truncate":
            length = rng.randrange(len(data))
            os.truncate(path, length)
            return Damage(kind, relative, length, size=len(data))
        offset, bit = rng.randrange(len(data)), rng.randrange(8)
        data[offset] ^= 1 << bit
        path.write_bytes(bytes(data))
        return Damage(kind, relative, offset, bit, len(data))
    database = home / DB_NAME
    if kind == "blob_bit":
        conn = sqlite3.connect(database, isolation_level=None)
        try:
            rows = conn.execute("SELECT id, data FROM blobs ORDER BY id").fetchall()
            blob_id, blob = rng.choice(rows)
            data = bytearray(blob)
            offset, bit = rng.randrange(len(data)), rng.randrange(8)
            data[offset] ^= 1 << bit
            conn.execute("UPDATE blobs SET data = ? WHERE id = ?", (bytes(data), blob_id))
        finally:
            conn.close()
        _require_no_journal(home)
        return Damage(kind, str(blob_id), offset, bit, len(data))
    _require_no_journal(home)
    data = bytearray(database.read_bytes())
    offset, bit = rng.randrange(len(data)), rng.randrange(8)
    data[offset] ^= 1 << bit
    database.write_bytes(bytes(data))
    return Damage(kind, DB_NAME, offset, bit, len(data))


def _require_no_journal(home: Path) -> None:
    for suffix in ("-wal", "-shm", "-journal"):
        if (home / (DB_NAME + suffix)).exists():
            raise RuntimeError(f"{DB_NAME}{suffix} exists: the database file is not all there is")


# -- trials --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A trial that was undetected or crashed, with what to replay it."""

    trial: int
    damage: Damage
    outcome: str
    what: tuple[str, ...]
    """Observations that differed, or the exceptions that were raised (with tracebacks)."""


@dataclass(frozen=True)
class Trial:
    index: int
    damage: Damage
    outcome: str
    codes: tuple[str, ...]
    case: Case | None


@dataclass
class Summary:
    """Counts of a run of the bench."""

    trials: int = 0
    by_kind: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: {kind: collections.Counter() for kind in KINDS}
    )
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    cases: list[Case] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, outcome: str) -> int:
        return sum(counts[outcome] for counts in self.by_kind.values())

    @property
    def detected(self) -> int:
        return self.count("detected")

    @property
    def harmless(self) -> int:
        return self.count("harmless")

    @property
    def undetected(self) -> int:
        return self.count("undetected")

    @property
    def crashed(self) -> int:
        return self.count("crashed")

    def add(self, trial: Trial) -> None:
        self.trials += 1
        self.by_kind[trial.damage.kind][trial.outcome] += 1
        self.codes.update(trial.codes)
        if trial.case is not None:
            self.cases.append(trial.case)

    def last_line(self) -> str:
        return (
            f"corruption: {self.trials} damaged, {self.detected} detected, "
            f"{self.harmless} harmless, {self.undetected} undetected"
        )


def classify(index: int, damaged: Damage, pristine: Observations, seen: Observations) -> Trial:
    """The outcome of one trial from its observations against the pristine ones."""
    crashes: list[str] = []
    differing: list[str] = []
    codes: list[str] = []
    for name, expected in pristine.items():
        if name not in seen:
            continue  # the history could not be opened: nothing after "open" was read
        value = seen[name]
        if isinstance(value, Failed):
            if isinstance(value.error, NbflowError):
                codes.append(value.error.code)
            else:
                trace = "".join(traceback.format_exception(value.error)).rstrip()
                crashes.append(f"{name}: {value.describe()}\n{trace}")
        elif not same(expected, value):
            differing.append(f"{name}: returned {_short(value)}, pristine {_short(expected)}")
    if crashes:
        outcome, what = "crashed", crashes
    elif differing:
        outcome, what = "undetected", differing
    elif codes:
        outcome, what = "detected", []
    else:
        outcome, what = "harmless", []
    case = Case(index, damaged, outcome, tuple(what)) if what else None
    return Trial(index, damaged, outcome, tuple(sorted(set(codes))), case)


def _short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass(frozen=True)
class Pristine:
    """The pristine folder and what reading it gives."""

    home: Path
    layout: Layout
    observations: Observations


def prepare(home: Path, scratch: Path) -> Pristine:
    """Build the pristine history in ``home`` if it is not there, and observe it."""
    if not (home / DB_NAME).exists():
        build_pristine(home)
    layout = pristine_layout(home)
    copy = scratch / "pristine-copy" / HOME_DIRNAME
    shutil.copytree(home, copy)
    try:
        observations = observe(copy, layout, pristine=True)
    finally:
        shutil.rmtree(copy.parent)
    failed = {k: v.describe() for k, v in observations.items() if isinstance(v, Failed)}
    if failed:
        raise RuntimeError(f"reading the pristine history failed: {failed}")
    if observations["resume"][0] != RunPhase.COMPLETED.value:
        raise RuntimeError(f"resuming the pristine run gave {observations['resume'][0]}")
    final = observations[f"restore[{layout.main_run[:8]}:finish]"]
    expected = {"samples", "label", "factor", "tags", "payload", "scaled", "stats", "digest"}
    if set(final) != expected | {"done"}:
        raise RuntimeError(f"the pristine run ended with variables {sorted(final)}")
    return Pristine(home, layout, observations)


def run_trial(pristine: Pristine, scratch: Path, seed: int, index: int) -> Trial:
    """Copy the pristine history, damage it once (trial ``index`` of ``seed``), read it."""
    rng = random.Random(f"nbflow-corruption/{seed}/{index}")
    copy = scratch / f"trial-{index}" / HOME_DIRNAME
    shutil.copytree(pristine.home, copy)
    try:
        damaged = damage(copy, rng)
        seen = observe(copy, pristine.layout)
        trial = classify(index, damaged, pristine.observations, seen)
        del seen
    finally:
        shutil.rmtree(copy.parent, ignore_errors=True)
    return trial


_WORKER: tuple[Pristine, Path, int] | None = None


def _worker_init(pristine: Pristine, scratch: Path, seed: int) -> None:
    global _WORKER
    _WORKER = (pristine, scratch, seed)
    _quiet().__enter__()  # a worker process of its own: quiet for its whole life


def _worker_trial(index: int) -> Trial:
    assert _WORKER is not None
    pristine, scratch, seed = _WORKER
    return run_trial(pristine, scratch, seed, index)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """nbflow logs a warning for every checkpoint a resume falls back past: keep the
    bench's output to its table (and give the level back, for the tests that import it)."""
    import logging

    logger = logging.getLogger("nbflow")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def _trials(
    pristine: Pristine, scratch: Path, seed: int, indices: range, jobs: int
) -> Iterator[Trial]:
    if jobs <= 1:
        for index in indices:
            yield run_trial(pristine, scratch, seed, index)
        return
    # Not fork: blake3 hashes large inputs on a Rayon thread pool, whose threads a forked
    # child does not have, so the child's first large hash would wait for them forever.
    context = multiprocessing.get_context("spawn")
    with context.Pool(jobs, _worker_init, (pristine, scratch, seed)) as pool:
        yield from pool.imap_unordered(_worker_trial, indices, chunksize=16)


def run_trials(
    flips: int,
    seed: int,
    *,
    jobs: int = 1,
    workdir: Path | None = None,
    pristine_home: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    """Build (or reuse) a pristine history and run ``flips`` damaged trials against it."""
    with _quiet():
        return _run_trials(flips, seed, jobs, workdir, pristine_home, progress)


def _run_trials(
    flips: int,
    seed: int,
    jobs: int,
    workdir: Path | None,
    pristine_home: Path | None,
    progress: Callable[[int], None] | None,
) -> Summary:
    started = time.perf_counter()
    summary = Summary()
    with tempfile.TemporaryDirectory(prefix="nbflow-corruption-", dir=workdir) as tmp:
        scratch = Path(tmp)
        home = pristine_home if pristine_home is not None else scratch / "pristine" / HOME_DIRNAME
        pristine = prepare(home, scratch)
        for trial in _trials(pristine, scratch, seed, range(flips), jobs):
            summary.add(trial)
            if progress is not None:
                progress(summary.trials)
    summary.cases.sort(key=lambda case: case.trial)
    summary.seconds = time.perf_counter() - started
    return summary


# -- reporting -----------------------------------------------------------------------------


def report(summary: Summary, seed: int) -> str:
    """The table of outcomes per damage kind, the error codes, and any bad cases."""
    lines = [f"{'damage':<20}" + "".join(f"{o:>12}" for o in OUTCOMES) + f"{'total':>10}"]
    for kind in KINDS:
        counts = summary.by_kind[kind]
        lines.append(
            f"{kind:<20}"
            + "".join(f"{counts[o]:>12}" for o in OUTCOMES)
            + f"{sum(counts.values()):>10}"
        )
    lines.append(
        f"{'all':<20}"
        + "".join(f"{summary.count(o):>12}" for o in OUTCOMES)
        + f"{summary.trials:>10}"
    )
    lines.append("")
    lines.append("error codes (trials in which each was raised):")
    for code, count in summary.codes.most_common():
        lines.append(f"  {code:<32}{count:>8}")
    lines.append("")
    rate = summary.trials / summary.seconds if summary.seconds else 0.0
    lines.append(f"elapsed: {summary.seconds:.1f} s ({rate:.1f} trials/s)")
    for case in summary.cases:
        lines.append("")
        lines.append(
            f"{case.outcome.upper()}: trial {case.trial} (replay: --seed {seed} --trial "
            f"{case.trial}): {case.damage.describe()}"
        )
        lines.extend(f"  {line}" for text in case.what for line in text.splitlines())
    return "\n".join(lines)


def replay(seed: int, index: int, workdir: Path | None, pristine_home: Path | None) -> int:
    """Run trial ``index`` alone and print every observation."""
    with _quiet(), tempfile.TemporaryDirectory(prefix="nbflow-corruption-", dir=workdir) as tmp:
        scratch = Path(tmp)
        home = pristine_home if pristine_home is not None else scratch / "pristine" / HOME_DIRNAME
        pristine = prepare(home, scratch)
        rng = random.Random(f"nbflow-corruption/{seed}/{index}")
        copy = scratch / f"trial-{index}" / HOME_DIRNAME
        shutil.copytree(pristine.home, copy)
        damaged = damage(copy, rng)
        print(damaged.describe())
        seen = observe(copy, pristine.layout)
        for name, value in seen.items():
            if isinstance(value, Failed):
                status = value.describe()
            else:
                status = "same" if same(pristine.observations.get(name), value) else "DIFFERENT"
            print(f"  {name:<36} {status}")
        trial = classify(index, damaged, pristine.observations, seen)
        del seen
        print(f"outcome: {trial.outcome}")
        if trial.case is not None:
            print("\n".join(trial.case.what))
    return 0 if trial.outcome in ("detected", "harmless") else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--flips", type=int, default=10_000, help="damaged trials (10000)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument(
        "--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes"
    )
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (a temp dir)")
    parser.add_argument(
        "--pristine", type=Path, default=None, help="reuse (or build) the pristine .nbflow here"
    )
    parser.add_argument("--trial", type=int, default=None, help="replay one trial, verbosely")
    args = parser.parse_args(argv)
    if args.trial is not None:
        return replay(args.seed, args.trial, args.dir, args.pristine)
    step = max(1, args.flips // 10)

    def progress(done: int) -> None:
        if done % step == 0 or done == args.flips:
            print(f"  {done}/{args.flips} trials", file=sys.stderr, flush=True)

    summary = run_trials(
        args.flips,
        args.seed,
        jobs=args.jobs,
        workdir=args.dir,
        pristine_home=args.pristine,
        progress=progress,
    )
    print(report(summary, args.seed))
    if summary.crashed:
        print(f"{summary.crashed} crashed (exceptions that are not NbflowError), listed above")
    print(summary.last_line())
    return 0 if summary.undetected == 0 and summary.crashed == 0 else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
