"""Run leases: a second process never drives a run that a live one drives (DESIGN §3)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_engine_rules import produces

from nbflow import Flow
from nbflow.errors import NbflowError
from nbflow.model import LeaseOwner
from nbflow.store import Home
from nbflow.store.leases import Lease, current_owner, owner_gone

DRIVER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from nbflow import Flow

    home, log, hold = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

    def step(name):
        def body(ctx):
            with log.open("a") as out:
                out.write(f"{name} {os.getpid()}\\n")
            while name == "b" and hold.exists():
                time.sleep(0.02)
            return {**ctx, name: True}
        return body

    with Flow("leased", home=home) as flow:
        flow.declare("a", step("a"), source="step a")
        flow.declare("b", step("b"), after=["a"], source="step b")
        flow.declare("c", step("c"), after=["b"], source="step c")
        flow.run()
    """
)


def declare(flow: Flow, log: Path) -> None:
    def step(name: str) -> object:
        def body(ctx: dict[str, bool]) -> dict[str, bool]:
            with log.open("a") as out:
                out.write(f"{name} {os.getpid()}\n")
            return {**ctx, name: True}

        return body

    # The same code as the driver's (by source), so that run() finds the same manifest.
    flow.declare("a", step("a"), source="step a")  # type: ignore[arg-type]
    flow.declare("b", step("b"), after=["a"], source="step b")  # type: ignore[arg-type]
    flow.declare("c", step("c"), after=["b"], source="step c")  # type: ignore[arg-type]


def start_driver(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log, hold = tmp_path / "states.log", tmp_path / "hold"
    hold.touch()
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / ".nbflow"), str(log), str(hold)]
    )
    deadline = time.monotonic() + 60
    while not (log.exists() and "b " in log.read_text()):
        assert time.monotonic() < deadline, "state b never started"
        assert child.poll() is None, "the driver died"
        time.sleep(0.02)
    return child, log


def stop(child: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)


@produces("run_in_progress")
def test_a_run_driven_by_a_live_process_is_refused_then_taken_over_once_it_is_gone(
    tmp_path: Path,
) -> None:
    child, log = start_driver(tmp_path)
    try:
        with Flow("leased", home=tmp_path / ".nbflow") as flow:
            declare(flow, log)
            (record,) = flow.runs()
            with pytest.raises(NbflowError) as caught:
                flow.resume(record.run_id)
            assert caught.value.code == "run_in_progress"
            assert f"process {child.pid} on host" in caught.value.message
            assert "(notebook leased)" in caught.value.message
            with pytest.raises(NbflowError) as again:
                flow.run()  # the same manifest: it would resume the run, so it is refused too
            assert again.value.code == "run_in_progress"
            assert flow.home.leases.live_owner(record.run_id) is not None
            stop(child)
            assert flow.home.leases.live_owner(record.run_id) is None
            result = flow.resume(record.run_id)
            assert result.phase.value == "completed"
            stream = flow.home.events.read_range(record.run_id)
            takeovers = [e.event for e in stream if e.event.kind == "lease_taken_over"]
            assert len(takeovers) == 1
            assert takeovers[0].previous.pid == child.pid
            assert takeovers[0].reason == f"its process {child.pid} is gone"
            assert flow.home.leases.lease(record.run_id) is None  # released at the end
    finally:
        stop(child)
    steps = [line.split()[0] for line in log.read_text().splitlines()]
    assert steps == ["a", "b", "b", "c"]  # b again after the takeover, never twice at once


def owner_elsewhere(notebook: str | None = None) -> LeaseOwner:
    return LeaseOwner(host="another-machine", boot_id="b", pid=1, pid_start=1, notebook=notebook)


def test_a_lease_from_another_machine_is_honoured_until_it_expires(tmp_path: Path) -> None:
    calls = {"n": 0}

    def interrupted_once(ctx: dict[str, int]) -> dict[str, int]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return {**ctx, "a": 1}

    with Flow("remote", home=tmp_path / ".nbflow") as flow:
        flow.declare("a", interrupted_once)
        with pytest.raises(KeyboardInterrupt):
            flow.run()
        (record,) = flow.runs()
        remote = owner_elsewhere(notebook="remote.ipynb")
        home: Home = flow.home
        home.leases.acquire(record.run_id, remote)  # as if another machine drove it now
        with pytest.raises(NbflowError) as caught:
            flow.resume(record.run_id)
        assert "process 1 on host another-machine (notebook remote.ipynb)" in str(caught.value)
        with home.database.transaction() as conn:  # its owner stopped renewing long ago
            home.leases._write(conn, Lease(record.run_id, remote, renewed_us=1, expires_us=2))
        assert flow.resume(record.run_id).phase.value == "completed"
        (takeover,) = [
            e.event
            for e in home.events.read_range(record.run_id)
            if e.event.kind == "lease_taken_over"
        ]
        assert takeover.previous == remote
        assert takeover.reason.startswith("its lease was last renewed ")


def test_a_damaged_lease_names_nobody_and_is_taken_over(tmp_path: Path) -> None:
    with Home(tmp_path / ".nbflow") as home:
        home.leases.acquire("r", owner_elsewhere())
        with home.database.transaction() as conn:
            conn.execute("UPDATE leases SET owner = replace(owner, 'another', 'ANOTHER')")
        lease = home.leases.lease("r")
        assert lease is not None
        assert owner_gone(lease, now=10) is not None
        home.leases.acquire("r", current_owner(None))  # taken over, no run to record it in


def test_the_owner_itself_may_drive_again_and_a_reused_pid_is_not_the_owner() -> None:
    me = current_owner("nb")
    alive = Lease("r", me, 0, 0)
    assert owner_gone(alive, now=10**16) is None  # this process runs, whatever the expiry
    reused = Lease("r", me.model_copy(update={"pid_start": me.pid_start + 1}), 0, 0)
    assert (
        owner_gone(reused, now=0)
        == f"its process {me.pid} is gone (the pid now belongs to another process)"
    )
