"""Branches on Dask, started for real: a ``dask scheduler`` and a ``dask worker`` launched
as processes on 127.0.0.1, and a ``LocalCluster``. Killing a worker mid-branch still
completes the run with one completed attempt per state. Every process is killed by pid at
the end (``processes``, ``worker_pools``)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import _wait_for_text
from test_fan_out import diamond, events_of, of_kind

from nbflow import Flow, RunPhase
from nbflow.model.events import BranchAssigned, StateCompleted, StateFailed

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("worker_pools")]


def test_the_diamond_on_a_dask_cluster_gives_the_sequential_result(
    tmp_path: Path, scheduler: str
) -> None:
    log = tmp_path / "log"
    with Flow("diamond", tmp_path / "home") as flow:
        diamond(flow, log)
        sequential = flow.run()
        on_dask = flow.run(parallel=2, dask=scheduler, fresh=True, cache=False)
        assert on_dask.phase is RunPhase.COMPLETED, on_dask
        one = flow.engine.codec.restore(sequential.final_snapshot_id or "")
        two = flow.engine.codec.restore(on_dask.final_snapshot_id or "")
        assert {k: v for k, v in two.items() if not k.startswith("pid_")} == {
            k: v for k, v in one.items() if not k.startswith("pid_")
        }
        stream = events_of(flow, on_dask.run_id)
        workers = {e.state_id: e.worker for e in of_kind(stream, BranchAssigned)}
        assert set(workers) == {"a", "b", "c", "d"}
        assert all(w.startswith("tcp://127.0.0.1:") for w in workers.values()), workers
        assert os.getpid() not in {two["pid_b"], two["pid_c"]}
        assert not any((tmp_path / "home" / "claims").iterdir()), "claims are released"


def test_killing_a_dask_worker_mid_branch_still_completes_the_run_once_per_state(
    tmp_path: Path, scheduler: str
) -> None:
    pid_file = tmp_path / "victim.pid"
    go = tmp_path / "go"

    def victim(ctx: dict[str, Any]) -> dict[str, Any]:
        pid_file.write_text(str(os.getpid()))
        while not go.exists():
            time.sleep(0.05)
        return {**ctx, "victim": True}

    def kill_it() -> None:
        _wait_for_text(pid_file, timeout=120)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        go.touch()

    killer = threading.Thread(target=kill_it, daemon=True)
    with Flow("killed", tmp_path / "home") as flow:
        flow.declare("a", lambda c: {**c, "a": 1})
        flow.declare("victim", victim, after=["a"], retries=2)
        flow.declare("other", lambda c: {**c, "other": 2}, after=["a"])
        flow.declare("end", lambda c: {**c, "end": c["victim"]}, after=["victim", "other"])
        killer.start()
        result = flow.run(parallel=2, dask=scheduler)
        killer.join(timeout=10)
        assert result.phase is RunPhase.COMPLETED, result
        stream = events_of(flow, result.run_id)
        completed = sorted(e.state_id for e in of_kind(stream, StateCompleted))
        assert completed == ["a", "end", "other", "victim"], "exactly one completion each"
        lost = [f for f in of_kind(stream, StateFailed) if f.state_id == "victim"]
        assert [f.error.code for f in lost] == ["worker_lost"]
        final = flow.engine.codec.restore(result.final_snapshot_id or "")
        assert final["end"] is True


def test_a_local_cluster_runs_the_diamond(tmp_path: Path) -> None:
    with Flow("local", tmp_path / "home") as flow:
        diamond(flow, tmp_path / "log")
        result = flow.run(parallel=2, dask="local")
        assert result.phase is RunPhase.COMPLETED, result
        final = flow.engine.codec.restore(result.final_snapshot_id or "")
        assert final["d"] == 23
        assert final["pid_b"] != os.getpid()
        workers = {e.worker for e in of_kind(events_of(flow, result.run_id), BranchAssigned)}
        assert all(w.startswith("tcp://127.0.0.1:") for w in workers), workers
