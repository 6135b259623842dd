"""The cache bench at CI size: what each run executes, never how long it takes."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from cache import EDITED, STATES, nbflow_in_kernel


def test_the_bench_notebook_executes_nothing_unchanged_and_three_states_after_the_edit(
    tmp_path: Path,
) -> None:
    first, unchanged, edited, run_all, keys = nbflow_in_kernel(tmp_path, 100_000, 20)
    assert first.executed == [f"s{i:02d}" for i in range(1, STATES + 1)]
    assert unchanged.executed == []
    assert edited.executed == [f"s{i:02d}" for i in range(EDITED, STATES + 1)]
    assert run_all.executed == []  # Run All of the edited notebook in a new kernel
    assert int(keys.executed[1]) == 3 * STATES  # a key for every state of the three runs
