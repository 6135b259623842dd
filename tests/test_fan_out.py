"""Fan-out through the Python API (DESIGN §3 "Fan-out"): independent states run at once in
real worker processes of the local pool; conflicts, worker deaths, timeouts and a SIGKILL of
the driving process while two branches run. Every process a test starts is killed by pid
at its end (``worker_pools``, ``processes``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from test_cli_run import descendants

from nbflow import Flow, RunPhase
from nbflow.engine.history import read_history
from nbflow.model.events import (
    BranchAssigned,
    EventEnvelope,
    FanOutStarted,
    StateCached,
    StateCompleted,
    StateEntered,
    StateFailed,
)
from nbflow.store import Home

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("worker_pools")]


def events_of(flow: Flow, run_id: str) -> list[EventEnvelope]:
    return flow.home.events.read_range(run_id)


def of_kind(stream: list[EventEnvelope], kind: type) -> list[Any]:
    return [e.event for e in stream if isinstance(e.event, kind)]


def diamond(flow: Flow, log: Path) -> None:
    """a, then b and c (no path between them), then d; each logs its name and pid."""

    def step(name: str, **add: Any) -> Any:
        def body(ctx: dict[str, Any]) -> dict[str, Any]:
            with log.open("a") as out:
                out.write(f"{name} {os.getpid()}\n")
            values = {key: fn(ctx) for key, fn in add.items()}
            return {**ctx, **values, f"pid_{name}": os.getpid()}

        return body

    flow.declare("a", step("a", x=lambda c: 1))
    flow.declare("b", step("b", b=lambda c: c["x"] + 1), after=["a"])
    flow.declare("c", step("c", c=lambda c: c["x"] + 2), after=["a"])
    flow.declare("d", step("d", d=lambda c: c["b"] * 10 + c["c"]), after=["b", "c"])


def test_diamond_runs_its_branches_in_other_processes_with_the_sequential_result(
    tmp_path: Path,
) -> None:
    log = tmp_path / "log"
    with Flow("diamond", tmp_path / "home") as flow:
        diamond(flow, log)
        sequential = flow.run()
        parallel = flow.run(parallel=2, fresh=True, cache=False)
        assert parallel.phase is RunPhase.COMPLETED, parallel
        one = flow.engine.codec.restore(sequential.final_snapshot_id or "")
        two = flow.engine.codec.restore(parallel.final_snapshot_id or "")
        pids = {key: two.pop(key) for key in list(two) if key.startswith("pid_")}
        assert two == {k: v for k, v in one.items() if not k.startswith("pid_")}
        assert two["d"] == 23  # d saw both branches' variables
        assert pids["pid_b"] != pids["pid_c"], "b and c ran in different processes"
        assert os.getpid() not in pids.values(), "no branch ran in the driving process"
        stream = events_of(flow, parallel.run_id)
        assert of_kind(stream, FanOutStarted)[0].max_parallel == 2
        workers = {e.state_id: e.worker for e in of_kind(stream, BranchAssigned)}
        assert set(workers) == {"a", "b", "c", "d"}
        assert workers["b"] != workers["c"]
        # b and c were both started before either ended: they ran at once.
        kinds = [(type(e.event).__name__, getattr(e.event, "state_id", "")) for e in stream]
        entered = {s: i for i, (k, s) in enumerate(kinds) if k == "StateEntered"}
        completed = {s: i for i, (k, s) in enumerate(kinds) if k == "StateCompleted"}
        assert max(entered["b"], entered["c"]) < min(completed["b"], completed["c"])


def test_two_branches_that_change_one_variable_differently_conflict(tmp_path: Path) -> None:
    with Flow("conflict", tmp_path / "home") as flow:
        flow.declare("a", lambda c: {**c, "shared": 0, "kept": "a"})
        flow.declare("left", lambda c: {**c, "shared": 1, "l": True}, after=["a"])
        flow.declare("right", lambda c: {**c, "shared": 2, "r": True}, after=["a"])
        result = flow.run(parallel=2)
        assert result.phase is RunPhase.FAILED
        assert result.error is not None
        assert result.error.code == "branch_conflict"
        assert "'left' and 'right'" in result.error.message
        assert "'shared'" in result.error.message
        assert result.error.details == {"states": ["left", "right"], "variable": "shared"}
        final = flow.engine.codec.restore(result.final_snapshot_id or "")
        assert final == {"shared": 0, "kept": "a"}, "nothing of either branch was merged"


def test_the_same_value_from_two_branches_is_no_conflict(tmp_path: Path) -> None:
    with Flow("agree", tmp_path / "home") as flow:
        flow.declare("a", lambda c: {**c, "unit": "m"})
        flow.declare("left", lambda c: {**c, "unit": "km", "l": 1}, after=["a"])
        flow.declare("right", lambda c: {**c, "unit": "km", "r": 2}, after=["a"])
        flow.declare("end", lambda c: {**c, "total": c["l"] + c["r"]}, after=["left", "right"])
        result = flow.run(parallel=2)
        assert result.phase is RunPhase.COMPLETED, result
        final = flow.engine.codec.restore(result.final_snapshot_id or "")
        assert final == {"unit": "km", "l": 1, "r": 2, "total": 3}


def test_removed_keys_and_independent_chains_join_in_plan_order(tmp_path: Path) -> None:
    """Two chains with no path between them: each sees only its own upstream, and the
    join holds both chains' changes and the key one of them removed is gone."""

    def drop_tmp(c: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in c.items() if k != "tmp"} | {"p2": c["p1"] * 2}

    with Flow("chains", tmp_path / "home") as flow:
        flow.declare("root", lambda c: {**c, "tmp": 1, "base": 5})
        flow.declare("p1", lambda c: {**c, "p1": c["base"] + 1}, after=["root"])
        flow.declare("p2", drop_tmp, after=["p1"])
        flow.declare("q1", lambda c: {**c, "q1": "p1" in c}, after=["root"])
        flow.declare("end", lambda c: {**c, "seen": sorted(c)}, after=["p2", "q1"])
        result = flow.run(parallel=3)
        assert result.phase is RunPhase.COMPLETED, result
        final = flow.engine.codec.restore(result.final_snapshot_id or "")
        assert final["q1"] is False, "q1 does not see p1: there is no path between them"
        assert final["seen"] == ["base", "p1", "p2", "q1"]
        assert "tmp" not in final


def test_a_worker_killed_mid_branch_is_retried_as_the_next_attempt(tmp_path: Path) -> None:
    flag = tmp_path / "killed-once"

    def dies_once(c: dict[str, Any]) -> dict[str, Any]:
        if not flag.exists():
            flag.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        return {**c, "survived": True}

    with Flow("killed", tmp_path / "home") as flow:
        flow.declare("a", lambda c: {**c, "a": 1})
        flow.declare("victim", dies_once, after=["a"], retries=1)
        flow.declare("other", lambda c: {**c, "other": 2}, after=["a"])
        result = flow.run(parallel=2)
        assert result.phase is RunPhase.COMPLETED, result
        stream = events_of(flow, result.run_id)
        failed = of_kind(stream, StateFailed)
        assert [(f.state_id, f.attempt, f.error.code) for f in failed] == [
            ("victim", 0, "worker_lost")
        ]
        assert "killed by SIGKILL" in failed[0].error.message
        completed = [e.state_id for e in of_kind(stream, StateCompleted)]
        assert sorted(completed) == ["a", "other", "victim"], "one completion per state"
        history = read_history(result.run_id, stream)
        assert history.last_attempt["victim"] == 1


def test_a_worker_death_with_no_retries_left_fails_the_run(tmp_path: Path) -> None:
    def dies(c: dict[str, Any]) -> dict[str, Any]:
        os.kill(os.getpid(), signal.SIGKILL)
        return c

    with Flow("dies", tmp_path / "home") as flow:
        flow.declare("a", lambda c: {**c, "a": 1})
        flow.declare("victim", dies, after=["a"])
        result = flow.run(parallel=2)
        assert result.phase is RunPhase.FAILED
        assert result.failed_state == "victim"
        assert result.error is not None
        assert result.error.code == "worker_lost"


def test_a_branch_over_its_time_limit_is_stopped_and_fails_with_timeout(tmp_path: Path) -> None:
    def sleeps(c: dict[str, Any]) -> dict[str, Any]:
        time.sleep(60)
        return c

    with Flow("slow", tmp_path / "home") as flow:
        flow.declare("a", lambda c: {**c, "a": 1})
        flow.declare("slow", sleeps, after=["a"], timeout="1s")
        result = flow.run(parallel=2)
        assert result.phase is RunPhase.FAILED
        assert result.error is not None
        assert result.error.code == "timeout"


def test_an_unreachable_dask_scheduler_is_one_error_before_anything_starts(
    tmp_path: Path,
) -> None:
    from nbflow.errors import NbflowError

    with Flow("nowhere", tmp_path / "home") as flow:
        flow.declare("a", lambda c: c)
        with pytest.raises(NbflowError) as raised:
            flow.run(dask="tcp://127.0.0.1:9")
        assert raised.value.code == "dask_unreachable"
        assert "\n" not in raised.value.message
        assert flow.runs() == [], "no run was started"


def test_bad_parallel_values_are_refused(tmp_path: Path) -> None:
    from nbflow.errors import NbflowError

    with Flow("bad", tmp_path / "home") as flow:
        flow.declare("a", lambda c: c)
        for bad in (0, -1, True, 1.5):
            with pytest.raises(NbflowError, match="parallel must be a whole number"):
                flow.run(parallel=bad)  # type: ignore[arg-type]
        assert flow.runs() == []


DRIVER = """
import os, sys, time
from pathlib import Path
from nbflow import Flow

folder = Path(sys.argv[1])
flow = Flow("crash", folder / "home")

def log(name):
    with (folder / "log").open("a") as out:
        out.write(f"{name} {os.getpid()}\\n")

def branch(name):
    def body(ctx):
        log(name)
        (folder / f"started-{name}").touch()
        while not (folder / "go").exists():
            time.sleep(0.05)
        return {**ctx, name: True}
    return body

def first(ctx):
    log("a")
    return {**ctx, "a": True}

def last(ctx):
    log("d")
    return {**ctx, "d": ctx["b"] and ctx["c"]}

flow.declare("a", first)
flow.declare("b", branch("b"), after=["a"])
flow.declare("c", branch("c"), after=["a"])
flow.declare("d", last, after=["b", "c"])
result = flow.run(parallel=2)
print(result.phase.value)
"""


def test_resume_after_a_sigkill_while_two_branches_run(
    tmp_path: Path, processes: list[int]
) -> None:
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER))
    first = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    processes.append(first.pid)
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"started-{n}").exists() for n in "bc"):
        assert first.poll() is None, "the driver ended early"
        assert time.monotonic() < deadline, "the branches never started"
        time.sleep(0.05)
    workers = descendants(first.pid)
    processes.extend(workers)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(timeout=30)
    for pid in workers:  # a crash takes the machine's processes of the kernel with it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with Home(tmp_path / "home") as home:
        (record,) = home.events.runs()
        assert record.status == "running"
        history = read_history(record.run_id, home.events.read_range(record.run_id))
        assert set(history.open_attempts) == {"b", "c"}, "two branches were cut off"
        assert list(history.completed) == ["a"]
    (tmp_path / "go").touch()
    second = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=180
    )
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == "completed"
    names = [line.split()[0] for line in (tmp_path / "log").read_text().splitlines()]
    assert names.count("a") == 1, "a completed before the crash and did not run again"
    assert names.count("b") == 2, "each cut-off branch ran once more"
    assert names.count("c") == 2
    assert names.count("d") == 1
    with Home(tmp_path / "home") as home:
        (record,) = home.events.runs()
        stream = home.events.read_range(record.run_id)
        attempts = [
            (e.event.state_id, e.event.attempt) for e in stream if isinstance(e.event, StateEntered)
        ]
        assert ("b", 1) in attempts
        assert ("c", 1) in attempts
        done = [e.event.state_id for e in stream if isinstance(e.event, StateCompleted)]
        assert sorted(done) == ["a", "b", "c", "d"]


def test_an_unchanged_fan_out_run_is_served_from_the_cache(tmp_path: Path) -> None:
    log = tmp_path / "log"

    def noted(ctx: dict[str, Any], name: str) -> None:
        with open(ctx["log"], "a") as out:
            out.write(name + "\n")

    def a(ctx: dict[str, Any]) -> dict[str, Any]:
        noted(ctx, "a")
        return {**ctx, "x": 1}

    def b(ctx: dict[str, Any]) -> dict[str, Any]:
        noted(ctx, "b")
        return {**ctx, "b": ctx["x"] + 1}

    def c(ctx: dict[str, Any]) -> dict[str, Any]:
        noted(ctx, "c")
        return {**ctx, "c": ctx["x"] + 2}

    def c_edited(ctx: dict[str, Any]) -> dict[str, Any]:
        noted(ctx, "c")
        return {**ctx, "c": 7}

    def d(ctx: dict[str, Any]) -> dict[str, Any]:
        noted(ctx, "d")
        return {**ctx, "d": ctx["b"] * 10 + ctx["c"]}

    start = {"log": str(log)}
    with Flow("cached", tmp_path / "home") as flow:
        flow.declare("a", a)
        flow.declare("b", b, after=["a"])
        flow.declare("c", c, after=["a"])
        flow.declare("d", d, after=["b", "c"])
        first = flow.run(start, parallel=2)
        assert sorted(log.read_text().split()) == ["a", "b", "c", "d"]
        again = flow.run(start, parallel=2)
        assert again.phase is RunPhase.COMPLETED, again
        assert sorted(log.read_text().split()) == ["a", "b", "c", "d"], "no state ran again"
        served = [e.state_id for e in of_kind(events_of(flow, again.run_id), StateCached)]
        assert sorted(served) == ["a", "b", "c", "d"]
        assert again.final_snapshot_id == first.final_snapshot_id
        flow.declare("c", c_edited, after=["a"])  # an edit of c
        edited = flow.run(start, parallel=2)
        served = [e.state_id for e in of_kind(events_of(flow, edited.run_id), StateCached)]
        assert sorted(served) == ["a", "b"], "c and the state after it ran"
        assert sorted(log.read_text().split()) == ["a", "b", "c", "c", "d", "d"]
        final = flow.engine.codec.restore(edited.final_snapshot_id or "")
        assert final["d"] == 27


def test_a_branch_that_records_a_fact_is_refused_and_runs_in_kernel_when_marked(
    tmp_path: Path,
) -> None:
    import nbflow

    def with_fact(ctx: dict[str, Any]) -> dict[str, Any]:
        return {**ctx, "answer": nbflow.fact("answer", lambda: 42)}

    with Flow("facts", tmp_path / "home") as flow:
        flow.declare("a", lambda c: {**c, "a": 1})
        flow.declare("asks", with_fact, after=["a"])
        flow.declare("other", lambda c: {**c, "other": 2}, after=["a"])
        refused = flow.run(parallel=2)
        assert refused.phase is RunPhase.FAILED
        assert refused.error is not None
        assert refused.error.code == "fact_in_branch"
        assert "--in-kernel" in (refused.error.message + str(refused.error.details))
        flow.declare("asks", with_fact, after=["a"], in_kernel=True)
        result = flow.run(parallel=2)
        assert result.phase is RunPhase.COMPLETED, result
        final = flow.engine.codec.restore(result.final_snapshot_id or "")
        assert final["answer"] == 42
        facts = [
            e for e in events_of(flow, result.run_id) if type(e.event).__name__ == "FactRecorded"
        ]
        assert len(facts) == 1, "the fact was recorded by the kernel"
