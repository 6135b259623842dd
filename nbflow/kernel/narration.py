"""What the kernel tells the user as a run's events are appended: cache hits, child runs,
skips, retries, redactions, progress lines and the live DAG."""

from __future__ import annotations

from typing import TYPE_CHECKING

from nbflow.hashing.redact import Redaction
from nbflow.kernel.views import live_view
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


class Narrator:
    """Listens to the engine of one kernel session and tells its user."""

    def __init__(self, session: KernelSession) -> None:
        self._session = session
        self._told: set[str] = set()
        """States whose reason for not being cached was said already."""
        self._redactions_told: set[tuple[str, ...]] = set()

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
        if session.live_plan is not None and isinstance(
            event,
            (
                StateEntered,
                StateCompleted,
                StateFailed,
                RetryScheduled,
                ChildRunSpawned,
                ChildRunJoined,
            ),
        ):
            stream = session.home.events.read_range(envelope.run_id)
            view, done, current = live_view(session.live_plan, stream, stale=session.live_stale)
            session.presenter.live(view, done, len(session.live_plan.states), current)
        if isinstance(event, StateEntered):
            session.live_run = envelope.run_id
            session.presenter.progress(event.state_id, event.attempt, "started")
        elif isinstance(event, StateCompleted):
            session.presenter.progress(event.state_id, -1, "completed")
        elif isinstance(event, StateFailed):
            session.presenter.progress(
                event.state_id, event.attempt, f"failed: {event.error.message}"
            )
