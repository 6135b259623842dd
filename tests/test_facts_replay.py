"""Facts of any value, ``nbflow.now`` and ``nbflow.seed``, and replay (DESIGN §3 "Replay",
§4): recorded once, served on retry, resume and replay without calling again."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import nbflow
from nbflow import Flow, RunPhase
from nbflow.model.events import FactRecorded


def calls(path: Path) -> int:
    return len(path.read_text()) if path.exists() else 0


def counted(path: Path, value: Any) -> Any:
    with path.open("a") as out:
        out.write("x")
    return value


def declare_measure(flow: Flow, counter: Path, extra_fact: bool = False) -> None:
    def measure(ctx: dict[str, Any]) -> dict[str, Any]:
        reading = nbflow.fact("reading", lambda: counted(counter, {"celsius": 21}))
        when = nbflow.now()
        seed = nbflow.seed()
        seeds = [nbflow.seed(), nbflow.seed("named")]
        if extra_fact:
            nbflow.fact("unrecorded", lambda: counted(counter, 1))
        return {**ctx, "reading": reading, "when": when.isoformat(), "seeds": [seed, *seeds]}

    def report(ctx: dict[str, Any]) -> dict[str, Any]:
        return {**ctx, "line": f"{ctx['reading']['celsius']} at {ctx['when']}"}

    flow.declare("measure", measure)
    flow.declare("report", report, after=["measure"])


def test_replay_calls_nothing_live_and_reproduces_the_run_exactly(tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    with Flow("replayed", tmp_path / ".nbflow") as flow:
        declare_measure(flow, counter)
        first = flow.run({"site": "north"})
        assert first.phase is RunPhase.COMPLETED
        assert calls(counter) == 1
        original = flow.restore("report", first.run_id)
        assert dt.datetime.fromisoformat(original["when"]).tzinfo is not None
        assert len(set(original["seeds"])) == 3

        replay = flow.replay(first.run_id[:10])
        assert replay.phase is RunPhase.COMPLETED, replay
        assert calls(counter) == 1  # zero live calls
        assert flow.restore("report", replay.run_id) == original
        assert replay.final_snapshot_id == first.final_snapshot_id
        assert replay.replay is not None
        assert replay.replay.reproduced
        assert "reproduced run" in str(replay)
        assert "exactly" in str(replay)


def test_a_replay_that_needs_an_unrecorded_fact_fails_with_fact_missing(tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    with Flow("replayed", tmp_path / ".nbflow") as flow:
        declare_measure(flow, counter)
        first = flow.run()
        declare_measure(flow, counter, extra_fact=True)
        replay = flow.replay(first.run_id)
        assert replay.phase is RunPhase.FAILED
        assert replay.failed_state == "measure"
        assert replay.error is not None
        assert replay.error.code == "fact_missing"
        assert not replay.error.retryable
        assert "unrecorded" in replay.error.message
        assert calls(counter) == 1  # neither the recorded fact nor the missing one ran


def test_a_replay_whose_code_changed_says_what_differs(tmp_path: Path) -> None:
    with Flow("replayed", tmp_path / ".nbflow") as flow:
        flow.declare("a", lambda ctx: {**ctx, "x": 1, "y": 2})
        first = flow.run()
        flow.declare("a", lambda ctx: {**ctx, "x": 1, "y": 3})
        replay = flow.replay(first.run_id)
        assert replay.replay is not None
        assert not replay.replay.reproduced
        assert replay.replay.differing == ("y",)
        assert "y differ" in str(replay)


def test_now_and_seed_are_keyed_by_state_and_position(tmp_path: Path) -> None:
    with Flow("keys", tmp_path / ".nbflow") as flow:
        flow.declare("a", lambda ctx: {**ctx, "s": [nbflow.seed(), nbflow.seed()]})
        result = flow.run()
        stream = flow.home.events.read_range(result.run_id)
        keys = [e.event.key for e in stream if isinstance(e.event, FactRecorded)]
        assert keys == ["nbflow.seed:a:0", "nbflow.seed:a:1"]
    assert isinstance(nbflow.seed(), int)  # outside a run: simply a value
    assert nbflow.now().tzinfo is not None


def test_a_retry_gets_the_recorded_value_not_the_one_the_failed_attempt_changed(
    tmp_path: Path,
) -> None:
    np = pytest.importorskip("numpy")
    attempts: list[int] = []

    def body(ctx: dict[str, Any]) -> dict[str, Any]:
        values = nbflow.fact("values", lambda: np.arange(100_000))
        attempts.append(int(values[0]))
        values[0] = 99  # a failed attempt that changed what it got
        if len(attempts) == 1:
            raise ConnectionError("flaky")
        return {**ctx, "first": int(values[1])}

    with Flow("retry", tmp_path / ".nbflow") as flow:
        flow.declare("a", body, retries=1)
        assert flow.run().phase is RunPhase.COMPLETED
        assert attempts == [0, 0]


CRASHING_FLOW = """
import sys, os, time
from pathlib import Path
import numpy as np, pandas as pd
import nbflow
from nbflow import Flow

folder = Path(sys.argv[1])
counter = folder / "calls"

def counted(value):
    with counter.open("a") as out:
        out.write("x")
    return value

def fetch(ctx):
    array = nbflow.fact("array", lambda: counted(np.full(100 * 2**20 // 8, 7.0)))
    frame = nbflow.fact("frame", lambda: counted(pd.DataFrame({"a": range(1000), "b": "x"})))
    (folder / "fetched").write_text("yes")
    while (folder / "hold").exists():
        time.sleep(0.05)
    return {**ctx, "total": int(array.sum()), "rows": len(frame), "b": frame["b"].iloc[-1]}

with Flow("fetching", folder / ".nbflow") as flow:
    flow.declare("fetch", fetch)
    result = flow.run()
    print(result.phase.value, flow.restore("fetch"))
"""


def test_array_and_frame_facts_survive_a_crash_without_being_fetched_again(
    tmp_path: Path,
) -> None:
    pytest.importorskip("pandas")
    script = tmp_path / "crashing.py"
    script.write_text(textwrap.dedent(CRASHING_FLOW))
    (tmp_path / "hold").touch()
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "fetched").exists():
            assert process.poll() is None, "the flow ended before it was killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    assert calls(tmp_path / "calls") == 2
    (tmp_path / "hold").unlink()
    again = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 0, again.stderr
    expected = {"b": "x", "rows": 1000, "total": 7 * (100 * 2**20 // 8)}  # sorted keys
    assert again.stdout.strip() == f"completed {expected}"
    assert calls(tmp_path / "calls") == 2  # resumed from the record: not fetched again


def test_gc_keeps_the_artifacts_of_recorded_facts(tmp_path: Path) -> None:
    from nbflow import maintenance

    with Flow("kept", tmp_path / ".nbflow") as flow:
        flow.declare("a", lambda ctx: {**ctx, "n": len(nbflow.fact("blob", lambda: b"z" * 70_000))})
        result = flow.run()
        report = maintenance.collect_garbage(flow.home, dry_run=False)
        assert report.removed == ()
        replay = flow.replay(result.run_id)
        assert replay.replay is not None
        assert replay.replay.reproduced
