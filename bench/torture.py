"""Durability under SIGKILL, at scale: engine processes and real kernels killed mid-run.

Engine kills. A parent process forks a child per trial. The child opens the history and
calls ``Flow.run()``, which resumes the interrupted run of the same plan (or starts a new
one when the last run completed). The plan is a chain of states that each change a small
value and some write a 40 kB value (a file artifact), so every write path is used. The
child reports each state the store *acknowledged* (its ``StateCompleted`` committed) on a
pipe. The child is killed with SIGKILL either at a random moment (black box) or by itself
at a chosen write stage (white box: the fault points of :mod:`nbflow.store.faults`, each
hit a random number of times first). A fork costs a few milliseconds, so a kill costs well
under a second.

Kernel kills. A real kernel runs the plan with ``%flow run`` in declare mode, or
``nbflow run`` executes a notebook; the bench watches the database from outside and
kills the kernel (and the command) at a random moment. The next trial resumes the run.

After every kill the history is opened as a new process would and checked:
- lost: a state acknowledged before the kill whose ``StateCompleted`` is not there;
- corrupt: a run's events or checkpoints cannot be read (any nbflow error on reading);
- wrong: a completed state whose checkpoint does not hold the values it must;
- leftover: temp files left under ``tmp/`` once the history has been opened again.

Usage: ``python bench/torture.py [--kills N] [--kernel-kills M] [--seed S] [--dir DIR]``.
The last line reads ``torture: <kills> kills, <lost> lost, <corrupt> corrupt, <wrong> wrong``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbflow import Flow
from nbflow.errors import NbflowError
from nbflow.model.events import EventEnvelope, StateCompleted
from nbflow.snapshot import NamespaceCodec
from nbflow.store import Home, faults

STATES = 8
BLOB_EVERY = 3
BLOB_BYTES = 40_000


def blob(index: int, salt: int) -> bytes:
    """The large value state ``index`` writes in a run started with ``salt``: new bytes
    in every run, so that every run writes artifact files (content addressing would
    otherwise find them stored already)."""
    return hashlib.blake2b(f"{index}:{salt}".encode()).digest() * (BLOB_BYTES // 64)


def step(value: int, index: int) -> int:
    """The small value after state ``index``."""
    return (value * 1_000_003 + index * 7919 + 1) % (1 << 61)


def expected_after(index: int, salt: int) -> dict[str, Any]:
    """The variables a checkpoint after state ``s<index>`` holds."""
    value = 1
    variables: dict[str, Any] = {"salt": salt}
    for i in range(index + 1):
        value = step(value, i)
        if i % BLOB_EVERY == 0:
            variables[f"blob{i}"] = blob(i, salt)
    variables["value"] = value
    variables["last"] = index
    return variables


def make_flow(home: Path) -> Flow:
    """The torture plan: ``s0 -> s1 -> ... -> s7``, variables as snapshots."""
    flow = Flow("torture", home=home, codec=lambda artifacts: NamespaceCodec(artifacts))
    for index in range(STATES):

        def body(ctx: dict[str, Any], index: int = index) -> dict[str, Any]:
            updated = dict(ctx)
            updated["value"] = step(ctx.get("value", 1), index)
            if index % BLOB_EVERY == 0:
                updated[f"blob{index}"] = blob(index, ctx["salt"])
            updated["last"] = index
            return updated

        after = [f"s{index - 1}"] if index else []
        flow.declare(f"s{index}", body, after=after, source=f"torture state {index}")
    return flow


@dataclass
class Tally:
    """What the checks found."""

    kills: int = 0
    lost: int = 0
    corrupt: int = 0
    wrong: int = 0
    leftover: int = 0
    completed_runs: set[str] = field(default_factory=set)
    acknowledged: int = 0
    white_box: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The bench's last line."""
        return (
            f"torture: {self.kills} kills, {self.lost} lost, {self.corrupt} corrupt, "
            f"{self.wrong} wrong"
        )

    @property
    def clean(self) -> bool:
        """No check failed."""
        return not (self.lost or self.corrupt or self.wrong or self.leftover)


Ack = tuple[str, str, int]
"""An acknowledged state: run id, state id, sequence number of its ``StateCompleted``."""


def check(home: Path, acknowledged: list[Ack], runs: set[str] | None, tally: Tally) -> None:
    """Open the history as a new process would and check ``runs`` (None: every run)."""
    try:
        with Home(home) as opened:
            tally.leftover += sum(1 for _ in (home / "tmp").iterdir())
            codec = NamespaceCodec(opened.artifacts)
            records = opened.events.runs()
            chosen = [r for r in records if runs is None or r.run_id in runs]
            for record in chosen:
                check_run(opened, codec, record.run_id, record.status, tally)
            for run_id, state_id, seq in acknowledged:
                stream = opened.events.read_range(run_id, seq, seq)
                if not (
                    stream
                    and isinstance(stream[0].event, StateCompleted)
                    and stream[0].event.state_id == state_id
                ):
                    tally.lost += 1
                    tally.problems.append(f"lost: {state_id} of run {run_id[:8]} (event {seq})")
    except NbflowError as exc:
        tally.corrupt += 1
        tally.problems.append(f"corrupt: {exc}")


def check_run(opened: Home, codec: NamespaceCodec, run_id: str, status: str, tally: Tally) -> None:
    """Every checkpoint of one run holds what its state must have left."""
    from nbflow.engine.history import read_history

    try:
        history = read_history(run_id, opened.events.read_range(run_id))
        salt = codec.restore(history.started.initial_snapshot_id)["salt"]
        for state_id, snapshot_id in history.completed.items():
            index = int(state_id[1:])
            if codec.restore(snapshot_id) != expected_after(index, salt):
                tally.wrong += 1
                tally.problems.append(f"wrong: checkpoint after {state_id} of {run_id[:8]}")
        if status == "completed":
            tally.completed_runs.add(run_id)
            if list(history.completed) != [f"s{i}" for i in range(STATES)]:
                tally.wrong += 1
                tally.problems.append(f"wrong: run {run_id[:8]} completed without all states")
    except NbflowError as exc:
        tally.corrupt += 1
        tally.problems.append(f"corrupt: run {run_id[:8]}: {exc}")


# -- engine kills ------------------------------------------------------------------------


def engine_child(home: Path, ack_fd: int, kill_point: tuple[str, int] | None, salt: int) -> None:
    """In a forked child: drive the plan, report acknowledged states, never return."""
    try:
        if kill_point is not None:
            faults.arm(kill_point[0], "kill", on_hit=kill_point[1])
        flow = make_flow(home)

        def acknowledge(envelope: EventEnvelope) -> None:
            if isinstance(envelope.event, StateCompleted):
                line = f"{envelope.run_id} {envelope.event.state_id} {envelope.seq}\n"
                os.write(ack_fd, line.encode())

        flow.engine.listeners.append(acknowledge)
        flow.run({"salt": salt})  # resumes the interrupted run; the salt is for a new one
        flow.close()
    finally:
        os._exit(0)


def read_acks(fd: int) -> list[Ack]:
    """Everything a dead child reported."""
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    acks: list[Ack] = []
    for line in data.decode().splitlines():
        run_id, state_id, seq = line.split()
        acks.append((run_id, state_id, int(seq)))
    return acks


def engine_kills(home: Path, kills: int, rng: random.Random, tally: Tally) -> None:
    """Kill ``kills`` forked engine processes; check the history after each."""
    points = [p for p in faults.POINTS if p != "wal.checkpoint"]
    started = time.monotonic()
    trials = 0
    while tally.kills < kills:
        trials += 1
        white_box = rng.random() < 0.5
        kill_point = (rng.choice(points), rng.randint(1, 12)) if white_box else None
        read_fd, write_fd = os.pipe()
        salt = rng.getrandbits(48)
        pid = os.fork()
        if pid == 0:
            os.close(read_fd)
            engine_child(home, write_fd, kill_point, salt)
        os.close(write_fd)
        if not white_box:
            # A random moment: most runs of the plan take 20-60 ms here.
            select.select([], [], [], rng.uniform(0.0, 0.06))
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        acknowledged = read_acks(read_fd)
        os.close(read_fd)
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        if killed:
            tally.kills += 1
            if kill_point is not None:
                tally.white_box[kill_point[0]] += 1
        tally.acknowledged += len(acknowledged)
        runs = {run_id for run_id, _, _ in acknowledged}
        newest = _newest_run(home)
        if newest:
            runs.add(newest)
        full = tally.kills % 1000 == 0 and killed
        check(home, acknowledged, None if full else runs, tally)
        if tally.kills and killed and tally.kills % 500 == 0:
            rate = tally.kills / (time.monotonic() - started)
            print(f"  {tally.kills} kills ({rate:.0f}/s), {tally.problems[:1] or 'clean'}")
    check(home, [], None, tally)


def _newest_run(home: Path) -> str | None:
    database = home / "nbflow.db"
    if not database.exists():
        return None
    connection = sqlite3.connect(database)
    try:
        row = connection.execute(
            "SELECT run_id FROM runs ORDER BY started_us DESC LIMIT 1"
        ).fetchone()
    except sqlite3.Error:
        return None
    finally:
        connection.close()
    return str(row[0]) if row else None


# -- kernel kills ------------------------------------------------------------------------

KERNEL_STATES = 5


def kernel_cells(log: Path) -> list[str]:
    """Declare-mode cells of a chain whose states take 30-120 ms each."""
    cells = ["%load_ext nbflow", "%flow mode declare"]
    for index in range(KERNEL_STATES):
        after = f" --after k{index - 1}" if index else ""
        cells.append(
            f"%%state k{index}{after}\n"
            "import time, random\n"
            f"open({str(log)!r}, 'a').write('k{index}\\n')\n"
            "time.sleep(random.uniform(0.03, 0.12))\n"
            f"v{index} = {index} * 10\n"
            f"blob{index} = bytes(range(256)) * 100"
        )
    return cells


def notebook_for(folder: Path, log: Path) -> Path:
    import nbformat

    cells = [nbformat.v4.new_code_cell(c) for c in kernel_cells(log)[1:] if "%flow" not in c]  # type: ignore[no-untyped-call]
    notebook = nbformat.v4.new_notebook(cells=cells)  # type: ignore[no-untyped-call]
    path = folder / "torture.ipynb"
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]
    return path


def committed(home: Path) -> list[Ack]:
    """The ``StateCompleted`` events the database holds now (read from outside)."""
    database = home / "nbflow.db"
    if not database.exists():
        return []
    connection = sqlite3.connect(database, timeout=5)
    try:
        rows = connection.execute(
            "SELECT run_id, seq, body FROM events WHERE kind = 'state_completed'"
        ).fetchall()
    except sqlite3.Error:
        return []
    finally:
        connection.close()
    acks = []
    for run_id, seq, body in rows:
        state_id = EventEnvelope.model_validate_json(body).event.state_id  # type: ignore[union-attr]
        acks.append((str(run_id), str(state_id), int(seq)))
    return acks


def kernel_check(home: Path, acknowledged: list[Ack], tally: Tally) -> None:
    """Like :func:`check`, for the kernel plan: values ``v<i>`` of each checkpoint."""
    from nbflow.engine.history import read_history

    try:
        with Home(home) as opened:
            tally.leftover += sum(1 for _ in (home / "tmp").iterdir())
            codec = NamespaceCodec(opened.artifacts)
            for record in opened.events.runs():
                history = read_history(record.run_id, opened.events.read_range(record.run_id))
                if record.status == "completed":
                    tally.completed_runs.add(record.run_id)
                for state_id, snapshot_id in history.completed.items():
                    index = int(state_id[1:])
                    variables = codec.restore(snapshot_id)
                    want = {f"v{i}": i * 10 for i in range(index + 1)}
                    if {k: variables.get(k) for k in want} != want:
                        tally.wrong += 1
                        tally.problems.append(f"wrong: kernel checkpoint after {state_id}")
            present = set(committed(home))
            for ack in acknowledged:
                if ack not in present:
                    tally.lost += 1
                    tally.problems.append(f"lost: {ack}")
    except NbflowError as exc:
        tally.corrupt += 1
        tally.problems.append(f"corrupt: {exc}")


def kernel_kills(folder: Path, kills: int, rng: random.Random, tally: Tally) -> None:
    """Kill real kernels during ``%flow run`` and ``nbflow run``; check after each."""
    from jupyter_client.manager import KernelManager

    home = folder / ".nbflow"
    log = folder / "kernel-states.log"
    notebook = notebook_for(folder, log)
    done = 0
    while done < kills:
        use_cli = done % 2 == 1
        before = set(committed(home))
        entered = _entered(home)
        pause = rng.uniform(0.02, 0.6)  # after the run has entered its first state
        if use_cli:
            command = [sys.executable, "-m", "nbflow.cli", "run", str(notebook)]
            cli = subprocess.Popen(
                command, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            _wait_for_new_state(home, entered, cli.poll, time.monotonic() + 120)
            time.sleep(pause)
            for pid in [*_descendants(cli.pid), cli.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            cli.wait()
        else:
            environment = {k: v for k, v in os.environ.items() if k != "NBFLOW_HOME"}
            environment["JPY_SESSION_NAME"] = str(folder / "torture-kernel.ipynb")
            manager = KernelManager(kernel_name="python3")
            manager.start_kernel(cwd=str(folder), env=environment)
            client = manager.client()
            client.start_channels()
            try:
                client.wait_for_ready(timeout=60)
                for cell in kernel_cells(log):
                    client.execute_interactive(cell, timeout=60, output_hook=lambda _m: None)
                client.execute("%flow run")
                _wait_for_new_state(home, entered, lambda: None, time.monotonic() + 60)
                time.sleep(pause)
                provisioner = manager.provisioner
                process = getattr(provisioner, "process", None)
                if process is not None:
                    os.kill(process.pid, signal.SIGKILL)
            finally:
                client.stop_channels()
                with contextlib.suppress(Exception):
                    manager.shutdown_kernel(now=True)
        done += 1
        tally.kills += 1
        acknowledged = sorted(set(committed(home)) - before)
        tally.acknowledged += len(acknowledged)
        kernel_check(home, acknowledged, tally)


def _entered(home: Path) -> int:
    """How many ``StateEntered`` events the database holds now."""
    database = home / "nbflow.db"
    if not database.exists():
        return 0
    with contextlib.suppress(sqlite3.Error):
        connection = sqlite3.connect(database, timeout=5)
        try:
            row = connection.execute(
                "SELECT count(*) FROM events WHERE kind = 'state_entered'"
            ).fetchone()
            return int(row[0])
        finally:
            connection.close()
    return 0


def _wait_for_new_state(home: Path, entered: int, dead: Any, deadline: float) -> None:
    """Until a new state has been entered (so that the kill lands inside a run)."""
    while time.monotonic() < deadline:
        if _entered(home) > entered or dead() is not None:
            return
        time.sleep(0.01)


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            for child in map(int, (task / "children").read_text().split()):
                found += [child, *_descendants(child)]
    return found


def torture(kills: int, kernel_kills_wanted: int, seed: int, workdir: Path) -> Tally:
    """Run the whole bench in ``workdir``; the tally of both parts."""
    rng = random.Random(seed)
    tally = Tally()
    engine_home = workdir / "engine" / ".nbflow"
    engine_home.parent.mkdir(parents=True, exist_ok=True)
    engine_kills(engine_home, kills, rng, tally)
    if kernel_kills_wanted:
        kernel_folder = workdir / "kernel"
        kernel_folder.mkdir(exist_ok=True)
        kernel_kills(kernel_folder, kernel_kills_wanted, rng, tally)
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10_000)
    parser.add_argument("--kernel-kills", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        workdir = args.dir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        started = time.monotonic()
        tally = torture(args.kills, args.kernel_kills, args.seed, workdir)
        elapsed = time.monotonic() - started
    print(
        f"{tally.kills} kills in {elapsed:.0f} s; {tally.acknowledged} acknowledged states "
        f"checked; {len(tally.completed_runs)} completed runs checked; "
        f"{tally.leftover} leftover temp files"
    )
    if tally.white_box:
        print(
            "white-box kill points: "
            + ", ".join(f"{k} {v}" for k, v in sorted(tally.white_box.items()))
        )
    for problem in tally.problems[:20]:
        print(f"  {problem}")
    print(tally.line())
    return 0 if tally.clean else 1


if __name__ == "__main__":
    sys.exit(main())
