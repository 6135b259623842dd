"""Reading a run's event stream into what resume needs to know.

Resume is decided from the events alone. Streams that contradict themselves are refused with
a named error, never guessed at: a terminal event without an open attempt, an attempt that
does not follow the previous one, events after the end of the run, events of another run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nbflow.engine.children import ChildKey, ChildRecord
from nbflow.engine.facts import StoredFact
from nbflow.errors import HistoryError
from nbflow.model.errors import ErrorInfo
from nbflow.model.events import (
    CheckpointsDiscarded,
    ChildRunJoined,
    ChildRunSpawned,
    EventEnvelope,
    FactRecorded,
    FanOutStarted,
    RunCompleted,
    RunStarted,
    StateCompleted,
    StateEntered,
    StateFailed,
)


@dataclass(frozen=True)
class OpenAttempt:
    """An attempt that was entered and has not ended (yet, or ever)."""

    state_id: str
    attempt: int
    base_snapshot_id: str


@dataclass(frozen=True)
class Failure:
    """The last failed attempt of a state."""

    attempt: int
    base_snapshot_id: str
    error: ErrorInfo


@dataclass
class RunHistory:
    """What a run's stream says: progress, open attempt, failures, facts, and its end."""

    started: RunStarted
    head_seq: int
    completed: dict[str, str] = field(default_factory=dict)
    """State id → snapshot id it left, in completion order."""
    completed_base: dict[str, str] = field(default_factory=dict)
    """State id → the base snapshot of its completed attempt."""
    last_checkpoint: str = ""
    open_attempts: dict[str, OpenAttempt] = field(default_factory=dict)
    """State id → its open attempt. One at most, unless the run fans out."""
    fan_out: bool = False
    """The run runs independent states at once (a ``FanOutStarted`` was recorded)."""
    last_failure: dict[str, Failure] = field(default_factory=dict)
    last_attempt: dict[str, int] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    children: dict[ChildKey, ChildRecord] = field(default_factory=dict)
    """``(state_id, key)`` → what the stream says of that child run, in spawn order."""
    last_failed_state: str | None = None
    run_completed: RunCompleted | None = None

    @property
    def open_attempt(self) -> OpenAttempt | None:
        """The open attempt entered last, if any (the only one in a sequential run)."""
        return next(reversed(self.open_attempts.values()), None)

    def next_attempt(self, state_id: str) -> int:
        """The number the next attempt of ``state_id`` gets."""
        last = self.last_attempt.get(state_id)
        return 0 if last is None else last + 1


def _invalid(run_id: str, seq: int, reason: str) -> HistoryError:
    return HistoryError(
        "invalid_attempt_envelopes",
        f"event {seq} of run {run_id} contradicts the history before it: {reason}",
        name=run_id,
        hint="the event log was changed outside nbflow; the run cannot be resumed safely",
        details={"seq": seq, "reason": reason},
    )


def read_history(run_id: str, stream: list[EventEnvelope]) -> RunHistory:
    """Fold ``stream`` (the run's events from seq 1) into a :class:`RunHistory`."""
    history: RunHistory | None = None
    for expected_seq, envelope in enumerate(stream, start=1):
        if envelope.run_id != run_id:
            raise HistoryError(
                "run_id_mismatch",
                f"event {envelope.seq} in the stream of run {run_id} belongs to run "
                f"{envelope.run_id}",
                name=run_id,
                hint="the event log was changed outside nbflow; nothing was resumed",
                details={"seq": envelope.seq, "found_run_id": envelope.run_id},
            )
        if envelope.seq != expected_seq:
            raise _invalid(run_id, envelope.seq, f"expected event number {expected_seq}")
        event = envelope.event
        if history is None:
            if not isinstance(event, RunStarted):
                raise HistoryError(
                    "missing_run_started",
                    f"run {run_id} does not begin with RunStarted",
                    name=run_id,
                    hint="the event log was changed outside nbflow",
                )
            history = RunHistory(
                started=event, head_seq=0, last_checkpoint=event.initial_snapshot_id
            )
        elif history.run_completed is not None:
            raise _invalid(run_id, envelope.seq, "event after RunCompleted")
        else:
            _apply(history, run_id, envelope)
        history.head_seq = envelope.seq
    if history is None:
        raise HistoryError(
            "missing_run_started",
            f"run {run_id} has no events",
            name=run_id,
        )
    return history


def _apply(history: RunHistory, run_id: str, envelope: EventEnvelope) -> None:
    event = envelope.event
    seq = envelope.seq
    state_id = getattr(event, "state_id", None)
    # In a fan-out run each state has its own open attempt; in a sequential run there is
    # one for the whole run, as in the seed.
    open_attempt = (
        history.open_attempts.get(state_id)
        if history.fan_out and state_id
        else history.open_attempt
    )
    if isinstance(event, RunStarted):
        raise _invalid(run_id, seq, "a second RunStarted")
    if isinstance(event, StateEntered):
        if event.state_id in history.completed:
            raise _invalid(run_id, seq, f"state {event.state_id!r} entered after it completed")
        if open_attempt is not None and open_attempt.state_id != event.state_id:
            raise _invalid(
                run_id,
                seq,
                f"state {event.state_id!r} entered while {open_attempt.state_id!r} is open",
            )
        if event.attempt < history.next_attempt(event.state_id):
            raise _invalid(
                run_id, seq, f"attempt {event.attempt} of {event.state_id!r} repeats an earlier one"
            )
        history.open_attempts.pop(event.state_id, None)  # an orphan, superseded
        history.open_attempts[event.state_id] = OpenAttempt(
            event.state_id, event.attempt, event.base_snapshot_id
        )
        history.last_attempt[event.state_id] = event.attempt
    elif isinstance(event, StateCompleted):
        if open_attempt is None or open_attempt.state_id != event.state_id:
            raise _invalid(run_id, seq, f"state {event.state_id!r} completed without StateEntered")
        history.completed[event.state_id] = event.context_snapshot_id
        history.completed_base[event.state_id] = open_attempt.base_snapshot_id
        history.last_checkpoint = event.context_snapshot_id
        del history.open_attempts[event.state_id]
    elif isinstance(event, StateFailed):
        if (
            open_attempt is None
            or open_attempt.state_id != event.state_id
            or open_attempt.attempt != event.attempt
        ):
            raise _invalid(
                run_id,
                seq,
                f"attempt {event.attempt} of {event.state_id!r} failed without StateEntered",
            )
        history.last_failure[event.state_id] = Failure(
            event.attempt, open_attempt.base_snapshot_id, event.error
        )
        history.last_failed_state = event.state_id
        del history.open_attempts[event.state_id]
    elif isinstance(event, RunCompleted):
        history.run_completed = event
    elif isinstance(event, CheckpointsDiscarded):
        unknown = [s for s in event.states if s not in history.completed]
        if unknown:
            raise _invalid(run_id, seq, f"discarded states {unknown} had not completed")
        for state_id in event.states:
            del history.completed[state_id]
        history.last_checkpoint = event.snapshot_id
        history.open_attempts.clear()
    elif isinstance(event, FanOutStarted):
        history.fan_out = True
    elif isinstance(event, FactRecorded):
        held = StoredFact(event.snapshot_id) if event.snapshot_id else event.value
        history.facts.setdefault(event.key, held)
    elif isinstance(event, ChildRunSpawned):
        history.children.setdefault((event.state_id, event.key), ChildRecord(event))
    elif isinstance(event, ChildRunJoined):
        record = history.children.get((event.state_id, event.key))
        if record is None or record.spawned.child_run_id != event.child_run_id:
            raise _invalid(run_id, seq, f"child {event.key!r} joined but never spawned")
        if record.joined is None:
            record.joined = event
