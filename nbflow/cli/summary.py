"""What ``nbflow run`` prints when it ends, and the size of a run's plan."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from nbflow.engine.results import replay_verdict
from nbflow.kernel.views import StateCounts, attempt_bars, run_row
from nbflow.model.events import ReplayChecked
from nbflow.store import Home
from nbflow.ui.text import duration


def show_summary(home: Home, flow_id: str, status: int, output: Path, as_json: bool) -> None:
    """The table printed when ``nbflow run`` ends: the run, and each state's attempts."""
    records = home.events.runs(flow_id=flow_id, limit=1)
    if not records:
        print("nbflow: the notebook has no %%state cells; it ran without checkpoints")
        return
    record = records[0]
    row = run_row(home.events, record, StateCounts(home.artifacts)(record.manifest_id), False)
    stream = home.events.read_range(record.run_id)
    bars = [b for b in attempt_bars(stream) if b.outcome != "backoff"]
    replay = next((e.event for e in stream if isinstance(e.event, ReplayChecked)), None)
    if as_json:
        summary = {
            "run": asdict(row),
            "exit_code": status,
            "output": str(output),
            "attempts": [asdict(b) for b in bars],
        }
        if replay is not None:
            summary["replay"] = replay.model_dump(mode="json", exclude={"kind"})
        print(json.dumps(summary, indent=2))
        return
    print(
        f"\nrun {row.run_id[:8]} {row.status}: {row.states_done}/{row.states_total} states, "
        f"{duration(row.duration_ms)}; output written to {output}"
    )
    width = max((len(b.state_id) for b in bars), default=5)
    print(f"  {'state':<{width}}  attempt  {'took':>10}  outcome")
    for bar in bars:
        error = f"  {bar.error}" if bar.error else ""
        print(
            f"  {bar.state_id:<{width}}  {bar.attempt:>7}  {duration(bar.duration_ms):>10}"
            f"  {bar.outcome}{error}"
        )
    if replay is not None:
        print(f"replay: {replay_verdict(replay)}")
