"""A fan-out run's stream read into pictures and history: several open attempts at once,
each event paired with its own state's attempt; bars labelled with their worker."""

from __future__ import annotations

import pytest

from nbflow.engine.history import read_history
from nbflow.errors import HistoryError
from nbflow.kernel.views import attempt_bars
from nbflow.model.errors import ErrorCategory, ErrorInfo
from nbflow.model.events import (
    AttemptInterrupted,
    BranchAssigned,
    Event,
    EventEnvelope,
    FanOutStarted,
    RunStarted,
    StateCompleted,
    StateEntered,
    StateFailed,
)
from nbflow.ui.timeline_svg import render_timeline_svg, worker_label

LOST = ErrorInfo(
    code="worker_lost", category=ErrorCategory.INTERRUPTED, retryable=True, message="lost"
)


def stream(*events: Event, fan_out: bool = True) -> list[EventEnvelope]:
    head: list[Event] = [RunStarted(op_id="f", manifest_id="m", initial_snapshot_id="s0")]
    if fan_out:
        head.append(FanOutStarted(max_parallel=2, executor="local"))
    return [
        EventEnvelope(run_id="r", seq=i + 1, at_us=1_000_000 + i * 100_000, event=e)
        for i, e in enumerate([*head, *events])
    ]


BRANCHES = (
    StateEntered(state_id="b", attempt=0, base_snapshot_id="s1"),
    BranchAssigned(state_id="b", attempt=0, worker="worker 1 (pid 11)"),
    StateEntered(state_id="c", attempt=0, base_snapshot_id="s1"),
    BranchAssigned(state_id="c", attempt=0, worker="worker 2 (pid 12)"),
    StateFailed(state_id="c", attempt=0, error=LOST),
    StateCompleted(state_id="b", context_snapshot_id="s2"),
    StateEntered(state_id="c", attempt=1, base_snapshot_id="s1"),
)


def test_history_of_a_fan_out_run_holds_one_open_attempt_per_state() -> None:
    history = read_history("r", stream(*BRANCHES))
    assert history.fan_out
    assert list(history.completed) == ["b"]
    assert history.completed_base == {"b": "s1"}
    assert set(history.open_attempts) == {"c"}
    assert history.open_attempts["c"].attempt == 1
    assert history.last_failure["c"].error.code == "worker_lost"


def test_a_sequential_run_still_refuses_two_open_attempts() -> None:
    with pytest.raises(HistoryError) as refused:
        read_history("r", stream(*BRANCHES, fan_out=False))
    assert refused.value.code == "invalid_attempt_envelopes"
    assert "entered while 'b' is open" in refused.value.message


def test_concurrent_bars_pair_with_their_own_state_and_name_their_worker() -> None:
    bars = attempt_bars(stream(*BRANCHES, AttemptInterrupted(state_id="c", attempt=1)))
    found = [(b.state_id, b.attempt, b.outcome, b.worker) for b in bars]
    assert found == [
        ("b", 0, "completed", "worker 1 (pid 11)"),
        ("c", 0, "failed", "worker 2 (pid 12)"),
        ("c", 1, "interrupted", None),
    ]
    b, c = bars[0], bars[1]
    assert c.start_ms < b.start_ms + b.duration_ms, "the two bars overlap in time"
    svg = render_timeline_svg("r", bars, width=900)
    assert svg.count('class="nbflow-worker"') == 2
    assert ">worker 1<" in svg
    assert ">worker 2<" in svg
    assert "worker: worker 2 (pid 12)" in svg  # the hover text names it in full


def test_worker_labels_are_short() -> None:
    assert worker_label("worker 3 (pid 4242)") == "worker 3"
    assert worker_label("tcp://127.0.0.1:40123") == "127.0.0.1:40123"
