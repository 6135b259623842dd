"""The run this kernel is driving, kept up to date event by event for its live DAG.

Reading the run's stream again after each event made a run of n states cost O(n²); the
fold takes each event once. The presenter reads it when it draws, which may be on its
timer thread while the kernel's thread appends events: both sides take the lock.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from nbflow.kernel.attempts import AttemptFold
from nbflow.kernel.child_views import ChildSpan, child_spans, row_name
from nbflow.kernel.views import run_plan_view
from nbflow.model.events import ChildRunJoined, ChildRunSpawned, EventEnvelope
from nbflow.model.plan import Plan
from nbflow.ui.model import LiveFrame, PlanView

_ACTIVE = ("running", "retrying")


class LiveRun:
    """One run's plan and progress, fed every event of the run in order."""

    def __init__(self, run_id: str, plan: Plan, stale: Mapping[str, str]) -> None:
        self.run_id = run_id
        self.seq = 0
        """The last event folded."""
        self._plan = plan
        self._upstream = plan.upstream_map()
        self._states = tuple(state.id for state in plan.states)
        self._stale = dict(stale)
        self._fold = AttemptFold()
        self._child_events: list[EventEnvelope] = []
        self._spans: list[ChildSpan] = []
        self._spans_due = False
        self._lock = threading.Lock()

    def feed(self, envelope: EventEnvelope) -> None:
        """Fold the run's next event."""
        with self._lock:
            self._fold.add(envelope)
            self.seq = envelope.seq
            if isinstance(envelope.event, (ChildRunSpawned, ChildRunJoined)):
                self._child_events.append(envelope)
                self._spans_due = True

    def _children(self) -> list[ChildSpan]:
        if self._spans_due:  # read from the children's own histories: only when they change
            self._spans = child_spans(self._child_events)
            self._spans_due = False
        return self._spans

    def frame(self) -> LiveFrame:
        with self._lock:
            statuses: dict[str, str] = {}
            for state_id in self._states:
                status = self._fold.status_of(state_id, live=True)
                if status is None:
                    status = "stale" if state_id in self._stale else "pending"
                statuses[state_id] = status
            nodes = self._states
            spans = self._children()
            if spans:
                for span in spans:
                    statuses[row_name(span)] = span.view.status
                nodes = (*nodes, *(row_name(span) for span in spans))
            running = [s for s in self._states if statuses[s] in _ACTIVE]
            return LiveFrame(
                nodes,
                statuses,
                self._fold.completed,
                len(self._states),
                ", ".join(running) if running else None,
            )

    def view(self) -> PlanView:
        with self._lock:
            return run_plan_view(
                self._plan, self._upstream, self._fold, True, self._stale, self._children()
            )
