"""The torture bench at CI size: 200 engine processes and 10 kernels killed mid-run."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from torture import torture


def test_kills_lose_nothing_acknowledged_and_corrupt_nothing(tmp_path: Path) -> None:
    tally = torture(kills=200, kernel_kills_wanted=10, seed=7, workdir=tmp_path)
    assert tally.kills >= 210
    assert tally.problems == []
    assert (tally.lost, tally.corrupt, tally.wrong, tally.leftover) == (0, 0, 0, 0)
    assert tally.acknowledged > 200  # states did complete between the kills
    assert tally.completed_runs  # and runs resumed to their end
    assert len(tally.white_box) >= 4  # several write stages were hit by white-box kills
