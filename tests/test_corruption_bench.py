"""The corruption bench at CI size: 300 random damages to a history, none of them used."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from corruption import KINDS, Summary, report, run_trials

TRIALS = 300
SEED = 1729


@pytest.fixture(scope="module")
def summary(tmp_path_factory: pytest.TempPathFactory) -> Summary:
    return run_trials(TRIALS, SEED, workdir=tmp_path_factory.mktemp("corruption"))


def test_no_damage_is_read_as_a_different_value(summary: Summary) -> None:
    text = report(summary, SEED)
    assert summary.trials == TRIALS
    assert summary.crashed == 0, text
    assert summary.undetected == 0, text
    assert summary.detected + summary.harmless == TRIALS, text
    assert summary.last_line() == (
        f"corruption: {TRIALS} damaged, {summary.detected} detected, "
        f"{summary.harmless} harmless, 0 undetected"
    )


def test_every_kind_of_damage_was_applied_and_detected(summary: Summary) -> None:
    for kind in KINDS:
        counts = summary.by_kind[kind]
        assert sum(counts.values()) > 0, f"no trial applied {kind}"
        assert counts["detected"] > 0, f"{kind}: {dict(counts)}\n{report(summary, SEED)}"
    assert summary.codes["artifact_corrupt"] > 0  # hashes caught damaged artifacts
