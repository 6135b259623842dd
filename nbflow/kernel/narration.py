"""What the kernel tells the user as a run's events are appended: cache hits, child runs,
skips, retries, redactions, progress lines and the live DAG."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbflow.hashing.redact import Redaction
from nbflow.kernel.live_run import LiveRun
from nbflow.model.events import (
    CheckpointsDiscarded,
    ChildRunJoined,
    ChildRunSpawned,
    EventEnvelope,
    RetryScheduled,
    RunStarted,
    StateCached,
    StateCompleted,
    StateEntered,
    StateFailed,
    StateKeyed,
    StateSkipped,
)
from nbflow.store.events import now_us
from nbflow.ui.text import duration

if TYPE_CHECKING:
    from nbflow.kernel.session import KernelSession

_DRAWN = (
    StateEntered,
    StateCompleted,
    StateFailed,
    RetryScheduled,
    ChildRunSpawned,
    ChildRunJoined,
)
"""Events that change the live DAG."""


class Narrator:
    """Listens to the engine of one kernel session and tells its user."""

    def __init__(self, session: KernelSession) -> None:
        self._session = session
        self._told: set[str] = set()
        """States whose reason for not being cached was said already."""
        self._redactions_told: set[tuple[str, ...]] = set()
        self._live: LiveRun | None = None
        """The run being driven, folded event by event for its live DAG."""

    def on_redacted(self, where: str, done: list[Redaction]) -> None:
        """Say once per kind of secret what was withheld from the history, and why."""
        kinds = tuple(sorted(r.kind for r in done))
        if kinds in self._redactions_told:
            return
        self._redactions_told.add(kinds)
        self._session.presenter.message(
            f"nbflow: withheld from {where} before saving it: {', '.join(kinds)} "
            "(secrets are never written to .nbflow; what you see above is unchanged)"
        )

    def _draw(self, envelope: EventEnvelope) -> None:
        """Fold the event into the live run, and let the presenter draw it when due."""
        session = self._session
        plan = session.live_plan
        assert plan is not None
        live = self._live
        if live is None or live.run_id != envelope.run_id or live.seq != envelope.seq - 1:
            # A new run, or one resumed: its stream so far, read once.
            live = self._live = LiveRun(envelope.run_id, plan, session.live_stale)
            for earlier in session.home.events.read_range(envelope.run_id, 1, envelope.seq - 1):
                live.feed(earlier)
        live.feed(envelope)
        if isinstance(envelope.event, _DRAWN):
            session.presenter.live(live)

    def _worth_telling(self, event: StateKeyed) -> bool:
        """Why a state is not cached, said once per state; not for what the user marked."""
        reason = event.reason
        return (
            reason is not None
            and "marked" not in reason
            and "nbflow." not in reason  # facts and child runs: expected, nothing to fix
            and event.state_id not in self._told
        )

    def on_event(self, envelope: EventEnvelope) -> None:
        event = envelope.event
        session = self._session
        session.session_runs.setdefault(envelope.run_id, None)
        if isinstance(event, CheckpointsDiscarded):
            again = ", ".join(repr(s) for s in event.states) or "no state"
            session.presenter.message(
                f"nbflow: a checkpoint of run {envelope.run_id[:8]} is damaged, so it is not "
                f"used ({event.reason}); continuing from the newest intact one: {again} "
                "run again"
            )
        if isinstance(event, StateCached):
            ago = duration(max(0, now_us() - event.computed_us) // 1000)
            session.presenter.message(
                f"nbflow: {event.state_id} cached from run {event.from_run[:8]}, {ago} ago, "
                f"{duration(event.saved_ms)} saved; --no-cache to run it"
            )
        elif isinstance(event, ChildRunSpawned):
            which = "" if event.key.startswith("auto:") else f" ({event.key})"
            session.presenter.message(
                f"nbflow: {event.state_id}: child run {event.child_run_id[:8]} of "
                f"{event.target}{which}"
            )
        elif isinstance(event, ChildRunJoined):
            session.presenter.message(
                f"nbflow: {event.state_id}: child run {event.child_run_id[:8]} {event.status}"
            )
        elif isinstance(event, StateSkipped):
            session.presenter.message(
                f"nbflow: {event.state_id} skipped (tag {', '.join(event.tags)}); its "
                "downstream sees the variables of its upstream"
            )
        elif isinstance(event, StateKeyed) and self._worth_telling(event):
            self._told.add(event.state_id)
            session.presenter.message(f"nbflow: {event.state_id} is not cached: {event.reason}")
        if isinstance(event, RunStarted):
            session.live_run = envelope.run_id
        elif isinstance(event, RetryScheduled):
            session.presenter.progress(
                event.state_id,
                event.next_attempt - 1,
                f"failed; retrying in {event.delay_ms} ms (attempt {event.next_attempt})",
            )
        elif not session.verbose_progress:
            return
        if session.live_plan is not None:
            self._draw(envelope)
        if isinstance(event, StateEntered):
            session.live_run = envelope.run_id
            session.presenter.progress(event.state_id, event.attempt, "started")
        elif isinstance(event, StateCompleted):
            session.presenter.progress(event.state_id, -1, "completed")
        elif isinstance(event, StateFailed):
            session.presenter.progress(
                event.state_id, event.attempt, f"failed: {event.error.message}"
            )
