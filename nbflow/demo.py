"""A two-minute tour of the engine: ``python -m nbflow.demo [FOLDER]``.

Runs a four-state flow whose third state is interrupted on its first try, then runs the
flow again: the interrupted run resumes at that state, and the first two states are not
run again. Prints each run's event log.
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
from pathlib import Path
from typing import Any

from nbflow.flow import Flow
from nbflow.store import Home

_interrupt_once = {"armed": True}


def load(ctx: dict[str, Any]) -> dict[str, Any]:
    print("  load: reading 5 rows")
    return {**ctx, "rows": [3, 1, 4, 1, 5]}


def clean(ctx: dict[str, Any]) -> dict[str, Any]:
    print("  clean: dropping duplicates")
    return {**ctx, "rows": sorted(set(ctx["rows"]))}


def train(ctx: dict[str, Any]) -> dict[str, Any]:
    if _interrupt_once.pop("armed", False):
        print("  train: interrupted (as if the kernel died)")
        raise KeyboardInterrupt
    print("  train: fitting")
    return {**ctx, "model": {"mean_x1000": sum(ctx["rows"]) * 1000 // len(ctx["rows"])}}


def report(ctx: dict[str, Any]) -> dict[str, Any]:
    print(f"  report: model {ctx['model']}")
    return ctx


def print_events(home: Home, run_id: str) -> None:
    """One line per event of ``run_id``."""
    events = home.events.read_range(run_id)
    start = events[0].at_us
    for envelope in events:
        event = envelope.event
        what = " ".join(
            f"{k}={v}"
            for k, v in event.model_dump(mode="json", exclude={"kind"}).items()
            if k in ("state_id", "attempt", "status")
        )
        print(
            f"  {envelope.seq:>3}  +{(envelope.at_us - start) / 1000:8.1f} ms"
            f"  {event.kind:<20} {what}"
        )


def main(argv: list[str]) -> int:
    """Run the tour in ``argv[0]`` (default: a new temporary folder)."""
    folder = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="nbflow-demo-"))
    _interrupt_once["armed"] = True
    with Flow("demo", folder / ".nbflow") as flow:
        flow.declare("load", load)
        flow.declare("clean", clean, after=["load"])
        flow.declare("train", train, after=["clean"], retries=2, backoff="exp:10ms..1s")
        flow.declare("report", report, after=["train"])
        print(f"First run (history in {flow.home.root}):")
        with contextlib.suppress(KeyboardInterrupt):
            flow.run()
        run = flow.runs()[0]
        print(f"Run {run.run_id[:8]} is {run.status}, cut off in state {run.last_state!r}.")
        print("Running the flow again resumes it:")
        result = flow.run()
        print(f"Run {result.run_id[:8]} {result.phase.value}. Its events:")
        print_events(flow.home, result.run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
