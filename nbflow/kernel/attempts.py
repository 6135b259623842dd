"""A run's events folded into its attempts, one event at a time.

The timeline draws the attempts as bars; the DAG colours each state by its last attempt.
Both come from one fold, so that the live DAG of a run in progress can take each event as
it is appended (constant work per event) instead of reading the run's stream again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from nbflow.model.events import (
    AttemptInterrupted,
    BranchAssigned,
    EventEnvelope,
    FanOutStarted,
    RetryScheduled,
    RunCompleted,
    StateCached,
    StateCompleted,
    StateEntered,
    StateFailed,
    StateSkipped,
)
from nbflow.ui.model import AttemptBar


@dataclass(frozen=True)
class StateOutcome:
    """The last attempt of a state in one run."""

    status: str
    attempt: int
    duration_ms: int | None
    error: str | None


@dataclass
class _Open:
    """An attempt entered and not yet ended."""

    entered: StateEntered
    start_us: int
    served: str = ""
    """``cached`` or ``skipped``: how it completes without running."""
    worker: str | None = None


class AttemptFold:
    """Every attempt of one run (and every backoff wait) as a bar on the run's time axis,
    and each state's last attempt, from the run's events given in order.

    In a fan-out run several attempts are open at once: each event pairs with the open
    attempt of its state. In a sequential run a new attempt supersedes any open one (its
    process died inside it). ``size_of`` gives the size of a completed attempt's snapshot.
    """

    def __init__(self, size_of: Callable[[str], int | None] | None = None) -> None:
        self._size_of = size_of
        self._origin: int | None = None
        self._last_us = 0
        self._bars: list[AttemptBar] = []
        self._open: dict[str, _Open] = {}
        self._fan_out = False
        self.ended = False
        """The run has ended (``RunCompleted``): attempts left open were cut off."""
        self._latest: dict[str, StateOutcome] = {}
        self.completed = 0
        """``StateCompleted`` events seen."""

    def add_all(self, envelopes: Iterable[EventEnvelope]) -> AttemptFold:
        """Fold every event of ``envelopes``; returns the fold."""
        for envelope in envelopes:
            self.add(envelope)
        return self

    def add(self, envelope: EventEnvelope) -> None:
        """Fold the next event of the run."""
        event = envelope.event
        if self._origin is None:
            self._origin = envelope.at_us
        self._last_us = envelope.at_us
        if isinstance(event, FanOutStarted):
            self._fan_out = True
        elif isinstance(event, RunCompleted):
            self.ended = True
        state_id = getattr(event, "state_id", None)
        entry = self._open.get(state_id) if isinstance(state_id, str) else None
        if isinstance(event, StateEntered):
            for other in [event.state_id] if self._fan_out else list(self._open):
                if other in self._open:
                    self._close(other, "interrupted", envelope.at_us)
            self._open[event.state_id] = _Open(event, envelope.at_us)
            self._latest[event.state_id] = StateOutcome("running", event.attempt, None, None)
        elif entry is None:
            if isinstance(event, RetryScheduled):
                self._bars.append(
                    AttemptBar(
                        event.state_id,
                        event.next_attempt - 1,
                        (envelope.at_us - self._origin) // 1000,
                        event.delay_ms,
                        "backoff",
                    )
                )
                self._latest[event.state_id] = StateOutcome(
                    "retrying", event.next_attempt - 1, None, None
                )
        elif isinstance(event, StateCached):
            entry.served = "cached"
        elif isinstance(event, StateSkipped):
            entry.served = "skipped"
        elif isinstance(event, BranchAssigned):
            entry.worker = event.worker
        elif isinstance(event, StateCompleted):
            self.completed += 1
            size = self._size_of(event.context_snapshot_id) if self._size_of is not None else None
            self._close(event.state_id, "completed", envelope.at_us, size=size)
        elif isinstance(event, StateFailed):
            entry.served = ""
            self._close(event.state_id, "failed", envelope.at_us, event.error.message)
        elif isinstance(event, AttemptInterrupted):
            entry.served = ""
            self._close(event.state_id, "interrupted", envelope.at_us)

    def _close(
        self,
        state_id: str,
        outcome: str,
        at_us: int,
        error: str | None = None,
        size: int | None = None,
    ) -> None:
        entry = self._open.pop(state_id)
        bar = self._bar(entry, entry.served or outcome, at_us, error, size)
        self._bars.append(bar)
        self._latest[state_id] = StateOutcome(bar.outcome, bar.attempt, bar.duration_ms, error)

    def _bar(
        self, entry: _Open, outcome: str, at_us: int, error: str | None, size: int | None = None
    ) -> AttemptBar:
        origin = self._origin if self._origin is not None else entry.start_us
        return AttemptBar(
            entry.entered.state_id,
            entry.entered.attempt,
            (entry.start_us - origin) // 1000,
            max(0, (at_us - entry.start_us) // 1000),
            outcome,
            error,
            size,
            worker=entry.worker,
        )

    def bars(self) -> list[AttemptBar]:
        """The bars so far, in the order they started; attempts still open end at the last
        event, ``running`` (or ``interrupted`` once the run has ended)."""
        still = "interrupted" if self.ended else "running"
        found = self._bars + [
            self._bar(entry, still, self._last_us, None) for entry in self._open.values()
        ]
        return sorted(found, key=lambda bar: bar.start_ms)

    def status_of(self, state_id: str, live: bool) -> str | None:
        """A state's status after its last attempt (``None``: never entered); ``live``:
        the run is being driven right now (otherwise an open attempt was cut off)."""
        found = self._latest.get(state_id)
        if found is None:
            return None
        if found.status == "running" and (self.ended or not live):
            return "interrupted"
        return found.status

    def outcomes(self, live: bool) -> dict[str, StateOutcome]:
        """Each state's last attempt; see :meth:`status_of` for ``live``."""
        found: dict[str, StateOutcome] = {}
        for state_id, outcome in self._latest.items():
            if state_id in self._open:
                entry = self._open[state_id]
                duration = max(0, (self._last_us - entry.start_us) // 1000)
                status = "running" if live and not self.ended else "interrupted"
                outcome = StateOutcome(status, outcome.attempt, duration, None)
            found[state_id] = outcome
        return found
