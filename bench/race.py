"""Two processes race to resume one interrupted run: one drives it, the other is refused.

Engine trials. A run of ``a -> b -> c -> d`` is interrupted inside ``b`` (``a`` is
acknowledged). Two forked processes are released at the same instant and both call
``Flow.resume`` on it. Every state body logs ``pid state start end``. A trial fails if
bodies of that run were executed by both processes (two owners), if an acknowledged state
is lost or executed again, or if the run does not end completed with the right values.

Kernel trials. Two real kernels in one notebook folder; one of them interrupts a run of
the same plan, then both run ``%flow resume RUN`` at once.

Usage: ``python bench/race.py [--trials N] [--kernel-trials M] [--seed S]``. The last line
reads ``race: <trials> trials, <two> run by two owners at once, <lost> acknowledged states
lost``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbflow import Flow
from nbflow.engine import JsonContextCodec
from nbflow.errors import NbflowError
from nbflow.snapshot import NamespaceCodec

STATES = ("a", "b", "c", "d")


@dataclass
class RaceTally:
    """What the trials found."""

    trials: int = 0
    two_owners: int = 0
    lost: int = 0
    wrong: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The bench's last line."""
        return (
            f"race: {self.trials} trials, {self.two_owners} run by two owners at once, "
            f"{self.lost} acknowledged states lost"
        )

    @property
    def clean(self) -> bool:
        """No trial failed."""
        return not (self.two_owners or self.lost or self.wrong)


def make_flow(home: Path, log: Path, interrupt: Path | None, rng_sleep: float) -> Flow:
    """The race plan; ``b`` raises KeyboardInterrupt while ``interrupt`` exists."""
    flow = Flow("race", home=home)
    for index, name in enumerate(STATES):

        def body(ctx: dict[str, Any], name: str = name, index: int = index) -> dict[str, Any]:
            started = time.monotonic()
            if name == "b" and interrupt is not None and interrupt.exists():
                raise KeyboardInterrupt
            time.sleep(rng_sleep)
            with log.open("a") as out:
                out.write(f"{os.getpid()} {name} {started:.6f} {time.monotonic():.6f}\n")
            return {**ctx, name: index + 1}

        after = [STATES[index - 1]] if index else []
        flow.declare(name, body, after=after, source=f"race {name}")
    return flow


def engine_trial(folder: Path, rng: random.Random, tally: RaceTally) -> None:
    """One race of two forked processes over one interrupted run."""
    home, log, interrupt = folder / ".nbflow", folder / "bodies.log", folder / "interrupt"
    interrupt.touch()
    with make_flow(home, log, interrupt, 0.0) as flow:
        with contextlib.suppress(KeyboardInterrupt):
            flow.run()
        (record,) = flow.runs()
        run_id = record.run_id
    interrupt.unlink()
    go_read, go_write = os.pipe()
    children: dict[int, Path] = {}
    for index in range(2):
        outcome = folder / f"outcome{index}"
        sleep = rng.uniform(0.0, 0.01)
        pid = os.fork()
        if pid == 0:  # a racer
            os.close(go_write)
            try:
                os.read(go_read, 1)
                with make_flow(home, log, None, sleep) as racer:
                    try:
                        found = racer.home.events.run(run_id)
                        ended = found is not None and found.status != "running"
                        racer.resume(run_id)
                        outcome.write_text("already ended" if ended else "resumed")
                    except NbflowError as exc:
                        outcome.write_text(exc.code)
            finally:
                os._exit(0)
        children[pid] = outcome
    os.close(go_read)
    os.write(go_write, b"gg")  # both at once
    os.close(go_write)
    for pid in children:
        os.waitpid(pid, 0)
    outcomes = sorted(p.read_text() if p.exists() else "died" for p in children.values())
    tally.outcomes[" + ".join(outcomes)] += 1
    check_trial(home, log, run_id, {os.getpid()}, set(children), tally)


def check_trial(
    home: Path,
    log: Path,
    run_id: str,
    before: set[int],
    racers: set[int],
    tally: RaceTally,
    kernels: bool = False,
) -> None:
    """Who executed what, and what the history says, after one race."""
    tally.trials += 1
    rows = [line.split() for line in log.read_text().splitlines()]
    raced = rows[1:]  # the first row is a, run before the race by the process that set it up
    owners = {int(pid) for pid, *_ in raced if int(pid) in racers}
    if len(owners) > 1:
        tally.two_owners += 1
        tally.problems.append(f"two owners of run {run_id[:8]}: {rows}")
    executed_a = [pid for pid, name, *_ in rows if name == "a"]
    if len(executed_a) != 1 or int(executed_a[0]) not in before:
        tally.lost += 1  # a was acknowledged before the race: it must never run again
        tally.problems.append(f"acknowledged state a ran again in run {run_id[:8]}")
    with Flow(
        "race", home=home, codec=lambda a: NamespaceCodec(a) if kernels else JsonContextCodec(a)
    ) as flow:
        history = flow.engine.history(run_id)
        if history.run_completed is None or list(history.completed) != list(STATES):
            tally.wrong += 1
            tally.problems.append(f"run {run_id[:8]} did not complete: {list(history.completed)}")
        else:
            final = flow.engine.codec.restore(history.completed["d"])
            if {name: final.get(name) for name in STATES} != {"a": 1, "b": 2, "c": 3, "d": 4}:
                tally.wrong += 1
                tally.problems.append(f"run {run_id[:8]} ended with the wrong values")
    log.unlink()


# -- kernel trials -----------------------------------------------------------------------


def kernel_trials(folder: Path, trials: int, tally: RaceTally) -> None:
    """``trials`` races of two real kernels over one run each."""
    from jupyter_client.manager import KernelManager

    log, interrupt = folder / "bodies.log", folder / "interrupt"
    managers, clients = [], []
    environment = {k: v for k, v in os.environ.items() if k != "NBFLOW_HOME"}
    environment["JPY_SESSION_NAME"] = str(folder / "race.ipynb")
    environment["NBFLOW_TEXT"] = "1"
    try:
        for _ in range(2):
            manager = KernelManager(kernel_name="python3")
            manager.start_kernel(cwd=str(folder), env=environment)
            client = manager.client()
            client.start_channels()
            client.wait_for_ready(timeout=60)
            managers.append(manager)
            clients.append(client)
        pids = []
        for client in clients:
            reply = _execute(client, "import os\nprint(os.getpid())")
            pids.append(int(reply.strip().splitlines()[-1]))
        first = clients[0]
        for client in clients:
            _execute(client, "%load_ext nbflow")
        for cell in kernel_cells(log, interrupt):
            _execute(first, cell)
        for _ in range(trials):
            interrupt.touch()
            _execute(first, "%flow run --fresh")  # interrupted inside b
            run_id = _execute(
                first, "print(__nbflow__.session.home.events.runs()[0].run_id)"
            ).split()[-1]
            interrupt.unlink()
            ids = [c.execute(f"%flow resume {run_id}") for c in clients]
            texts = [_collect(c, i) for c, i in zip(clients, ids, strict=True)]
            outcomes = sorted(_kernel_outcome(t) for t in texts)
            tally.outcomes["kernels: " + " + ".join(outcomes)] += 1
            check_trial(folder / ".nbflow", log, run_id, {pids[0]}, set(pids), tally, True)
            if log.exists():
                log.unlink()
    finally:
        for client in clients:
            client.stop_channels()
        for manager in managers:
            with contextlib.suppress(Exception):
                manager.shutdown_kernel(now=True)


def kernel_cells(log: Path, interrupt: Path) -> list[str]:
    """Declare the race plan in a kernel; ``b`` is interrupted while ``interrupt`` exists."""
    cells = ["%flow mode declare"]
    for index, name in enumerate(STATES):
        after = f" --after {STATES[index - 1]}" if index else ""
        stop = (
            f"if os.path.exists({str(interrupt)!r}):\n    raise KeyboardInterrupt\n"
            if name == "b"
            else ""
        )
        cells.append(
            f"%%state {name}{after}\nimport os, time\nstarted = time.monotonic()\n{stop}"
            "time.sleep(0.005)\n"
            f"with open({str(log)!r}, 'a') as out:\n"
            "    out.write(f'{os.getpid()} "
            f"{name} {{started:.6f}} {{time.monotonic():.6f}}\\n')\n"
            f"{name} = {index + 1}"
        )
    return cells


def _execute(client: Any, code: str) -> str:
    return _collect(client, client.execute(code))


def _collect(client: Any, msg_id: str, timeout: float = 120) -> str:
    """Everything a cell printed (streams and errors), once the kernel is idle."""
    text = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = client.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id:
            continue
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            text.append(content["text"])
        elif kind == "error":
            text.append(f"{content['ename']}: {content['evalue']}")
        elif kind == "status" and content["execution_state"] == "idle":
            return "".join(text)
    raise TimeoutError(f"cell {msg_id} did not finish")


def _kernel_outcome(text: str) -> str:
    if "run_in_progress" in text:
        return "run_in_progress"
    if "already ended" in text:
        return "already ended"
    if "resuming run" in text:
        return "resumed"
    return f"other: {text.strip()[-120:]}"


def race(trials: int, kernel_trials_wanted: int, seed: int, workdir: Path) -> RaceTally:
    """Run ``trials`` races of engine processes, then ``kernel_trials_wanted`` of kernels."""
    rng = random.Random(seed)
    tally = RaceTally()
    for index in range(trials):
        folder = workdir / f"engine{index}"
        folder.mkdir(parents=True)
        engine_trial(folder, rng, tally)
    if kernel_trials_wanted:
        folder = workdir / "kernels"
        folder.mkdir(parents=True)
        kernel_trials(folder, kernel_trials_wanted, tally)
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=900)
    parser.add_argument("--kernel-trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        started = time.monotonic()
        tally = race(args.trials, args.kernel_trials, args.seed, Path(workdir))
        elapsed = time.monotonic() - started
    print(f"{tally.trials} trials in {elapsed:.0f} s; outcomes:")
    for outcome, count in tally.outcomes.most_common():
        print(f"  {count:5d}  {outcome}")
    for problem in tally.problems[:20]:
        print(f"  {problem}")
    print(tally.line())
    return 0 if tally.clean else 1


if __name__ == "__main__":
    sys.exit(main())
