"""Text views of large plans and runs stay within a screenful."""

from __future__ import annotations

import io

from nbflow.ui.model import AttemptBar, PlanView, RunRow, StateView
from nbflow.ui.text import SUMMARY_STATES, TextPresenter


def text_of(draw: str, *args: object) -> str:
    buffer = io.StringIO()
    getattr(TextPresenter(buffer), draw)(*args)
    return buffer.getvalue()


def test_a_long_chain_is_one_line_of_the_plan() -> None:
    states = [
        StateView(f"s{i}", (f"s{i - 1}",) if i else (), "completed" if i < 200 else "pending")
        for i in range(300)
    ]
    text = text_of("plan", PlanView("nb", tuple(states)))
    lines = text.splitlines()
    assert len(lines) == 4  # the title, s0, the chain, s299
    assert "s1 … s298" in lines[2]
    assert "298 states in a chain: 199 completed, 99 pending" in lines[2]


def test_a_timeline_of_a_thousand_attempts_is_a_line_per_state() -> None:
    bars = []
    for i in range(250):
        for attempt in range(4):
            outcome = "failed" if attempt < 3 else "completed"
            bars.append(AttemptBar(f"t{i}", attempt, i * 40 + attempt * 10, 5, outcome))
            if attempt < 3:
                bars.append(AttemptBar(f"t{i}", attempt, i * 40 + attempt * 10 + 5, 1, "backoff"))
    text = text_of("timeline", "r" * 32, bars)
    lines = text.splitlines()
    assert "1,000 attempts of 250 states (750 failed, 250 completed), 750 backoff waits" in text
    assert len(lines) == 2 + SUMMARY_STATES + 1
    assert "t0" in lines[2]
    assert "4 tries" in lines[2]
    assert "3 failed, 1 completed" in lines[2]
    assert f"… and {250 - SUMMARY_STATES} more states" in lines[-1]


def test_the_history_says_how_many_runs_it_leaves_out() -> None:
    rows = [RunRow(f"{i:032x}", "completed", 0, 5, 1, 1, "s") for i in range(20)]
    text = text_of("runs", rows, 10_000)
    assert "… and 9,980 older runs" in text
    assert "older" not in text_of("runs", rows, 20)
