"""The race bench at CI size: two processes (and two real kernels) resume one run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from race import race


def test_two_processes_never_drive_one_run_and_nothing_acknowledged_is_lost(
    tmp_path: Path,
) -> None:
    tally = race(trials=50, kernel_trials_wanted=10, seed=3, workdir=tmp_path)
    assert tally.trials == 60
    assert tally.problems == []
    assert (tally.two_owners, tally.lost, tally.wrong) == (0, 0, 0)
    refused = sum(n for outcome, n in tally.outcomes.items() if "run_in_progress" in outcome)
    assert refused > 0  # the races did overlap, and the loser was refused
    assert tally.outcomes["kernels: resumed + run_in_progress"] > 0
