"""Crash tests with real processes killed by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import final_context, make_engine, source_resolver

from nbflow.engine import RunPhase
from nbflow.store import Home

CHILD = textwrap.dedent(
    """
    import sys
    import textwrap
    from nbflow.engine import Engine, JsonContextCodec, StartRequest, store_manifest
    from nbflow.model import Edge, Manifest, Plan, StateSpec
    from nbflow.store import Home

    home_dir, out = sys.argv[1], sys.argv[2]

    def source(name: str) -> str:
        return (
            "def body(ctx):\\n"
            "    import os, time\\n"
            f"    open({out!r}, 'a').write({name!r} + ' ' + str(os.getpid()) + '\\\\n')\\n"
            f"    if {name!r} == 's2' and os.environ.get('NBFLOW_TEST_HANG'):\\n"
            "        time.sleep(600)\\n"
            f"    return {{**ctx, {name!r}: len(ctx) + 1}}\\n"
        )

    def resolve(manifest, spec):
        namespace = {}
        exec(spec.source, namespace)
        return namespace["body"]

    names = ["s1", "s2", "s3"]
    plan = Plan(
        flow_id="crash",
        states=tuple(StateSpec(id=n, source=source(n)) for n in names),
        edges=(Edge(upstream="s1", downstream="s2"), Edge(upstream="s2", downstream="s3")),
    )
    with Home(home_dir) as home:
        manifest = Manifest(flow_id="crash", plan=plan)
        manifest_id = store_manifest(home.artifacts, manifest)
        engine = Engine(home.artifacts, home.events, JsonContextCodec(home.artifacts), resolve)
        engine.start(StartRequest.for_manifest(manifest, manifest_id, {"seed": 0}))
    """
)


def wait_for(predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_sigkill_inside_state_2_then_resume_retries_it_and_skips_state_1(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    out = tmp_path / "states.log"
    home_dir = tmp_path / ".nbflow"
    child = subprocess.Popen(
        [sys.executable, str(script), str(home_dir), str(out)],
        env={**os.environ, "NBFLOW_TEST_HANG": "1"},
    )
    try:
        wait_for(lambda: out.exists() and "s2" in out.read_text())
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    with Home(home_dir) as home:
        run = home.events.runs()[0]
        assert run.status == "running"
        assert run.last_state == "s2"
        # A new engine in this process: the plan comes back from the stored manifest.
        engine = make_engine(home, source_resolver)
        result = engine.resume(run.run_id)
        assert result.phase is RunPhase.COMPLETED

        events = [e.event for e in home.events.read_range(run.run_id)]
        s1_done = next(e for e in events if e.kind == "state_completed" and e.state_id == "s1")
        s2_entries = [e for e in events if e.kind == "state_entered" and e.state_id == "s2"]
        assert [(e.attempt, e.base_snapshot_id) for e in s2_entries] == [
            (0, s1_done.context_snapshot_id),
            (1, s1_done.context_snapshot_id),
        ]
        assert final_context(engine, result) == {
            "seed": 0,
            "s1": 2,
            "s2": 3,
            "s3": 4,
        }
        assert home.events.run(run.run_id).status == "completed"  # type: ignore[union-attr]

    lines = [line.split() for line in out.read_text().splitlines()]
    assert [name for name, _ in lines] == ["s1", "s2", "s2", "s3"]
    assert lines[0][1] == lines[1][1] == str(child.pid)  # s1 ran once, in the killed child
    assert lines[2][1] == lines[3][1] == str(os.getpid())  # s2 retried and s3 run here
