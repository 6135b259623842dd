"""Building the presentation's views from the event store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from nbflow.engine.plan import topological_order
from nbflow.engine.staleness import HISTORY_DEPTH, last_completions, stale_states
from nbflow.errors import NbflowError, PlanError
from nbflow.kernel.child_views import ChildSpan, child_spans, row_name, with_children
from nbflow.model.events import (
    AttemptInterrupted,
    BranchAssigned,
    ChildOf,
    ChildRunSpawned,
    EventEnvelope,
    FanOutStarted,
    RetryScheduled,
    RunCompleted,
    RunStarted,
    StateCached,
    StateCompleted,
    StateEntered,
    StateFailed,
    StateSkipped,
    StatesSatisfied,
)
from nbflow.model.plan import Plan
from nbflow.snapshot.document import SnapshotDocument
from nbflow.store.artifacts import ArtifactStore
from nbflow.store.events import EventStore, RunRecord
from nbflow.ui.model import AttemptBar, BannerView, PlanView, RunRow, StateView


@dataclass(frozen=True)
class StateOutcome:
    """The last attempt of a state in one run."""

    status: str
    attempt: int
    duration_ms: int | None
    error: str | None


def attempt_bars(
    events: list[EventEnvelope], size_of: Callable[[str], int | None] | None = None
) -> list[AttemptBar]:
    """Every attempt of a run (and every backoff wait) as a bar on the run's time axis,
    in the order they started; ``size_of`` gives the size of a completed attempt's
    snapshot. In a fan-out run several attempts are open at once: each event pairs with
    the open attempt of its state."""
    if not events:
        return []
    origin = events[0].at_us
    bars: list[AttemptBar] = []
    open_entries: dict[str, _Open] = {}
    ended = any(isinstance(e.event, RunCompleted) for e in events)
    fan_out = any(isinstance(e.event, FanOutStarted) for e in events)

    def close(
        state_id: str, outcome: str, at_us: int, error: str | None = None, size: int | None = None
    ) -> None:
        entry = open_entries.pop(state_id)
        bars.append(
            AttemptBar(
                state_id,
                entry.entered.attempt,
                (entry.start_us - origin) // 1000,
                max(0, (at_us - entry.start_us) // 1000),
                entry.served or outcome,
                error,
                size,
                worker=entry.worker,
            )
        )

    for envelope in events:
        event = envelope.event
        state_id = getattr(event, "state_id", None)
        entry = open_entries.get(state_id) if isinstance(state_id, str) else None
        if isinstance(event, StateEntered):
            # Superseded: its process died inside it. In a sequential run any open
            # attempt is; in a fan-out run only one of the same state.
            for other in [event.state_id] if fan_out else list(open_entries):
                if other in open_entries:
                    close(other, "interrupted", envelope.at_us)
            open_entries[event.state_id] = _Open(event, envelope.at_us)
        elif entry is None:
            if isinstance(event, RetryScheduled):
                bars.append(
                    AttemptBar(
                        event.state_id,
                        event.next_attempt - 1,
                        (envelope.at_us - origin) // 1000,
                        event.delay_ms,
                        "backoff",
                    )
                )
        elif isinstance(event, StateCached):
            entry.served = "cached"
        elif isinstance(event, StateSkipped):
            entry.served = "skipped"
        elif isinstance(event, BranchAssigned):
            entry.worker = event.worker
        elif isinstance(event, StateCompleted):
            size = size_of(event.context_snapshot_id) if size_of is not None else None
            close(event.state_id, "completed", envelope.at_us, size=size)
        elif isinstance(event, StateFailed):
            entry.served = ""
            close(event.state_id, "failed", envelope.at_us, event.error.message)
        elif isinstance(event, AttemptInterrupted):
            entry.served = ""
            close(event.state_id, "interrupted", envelope.at_us)
    for state_id in list(open_entries):
        close(state_id, "interrupted" if ended else "running", events[-1].at_us)
    bars.sort(key=lambda bar: bar.start_ms)
    return bars


@dataclass
class _Open:
    """An attempt entered and not yet ended, while a stream is read."""

    entered: StateEntered
    start_us: int
    served: str = ""
    """``cached`` or ``skipped``: how it completes without running."""
    worker: str | None = None


def state_outcomes(events: list[EventEnvelope], live: bool) -> dict[str, StateOutcome]:
    """Each state's last attempt in one run; ``live``: the run is being driven right now."""
    outcomes: dict[str, StateOutcome] = {}
    for bar in attempt_bars(events):
        if bar.outcome == "backoff":
            outcomes[bar.state_id] = StateOutcome("retrying", bar.attempt, None, None)
            continue
        status = bar.outcome
        if status == "running" and not live:
            status = "interrupted"
        outcomes[bar.state_id] = StateOutcome(status, bar.attempt, bar.duration_ms, bar.error)
    return outcomes


def plan_view(
    events: EventStore,
    plan: Plan,
    *,
    live_run: str | None = None,
    restored: frozenset[str] = frozenset(),
    current: Mapping[str, Mapping[str, str]] | None = None,
) -> PlanView:
    """The plan with each state's latest status across this flow's recent runs; with
    ``current`` (each state's key facets as they would be now), stale states are marked."""
    latest: dict[str, StateOutcome] = {}
    wanted = {state.id for state in plan.states}
    children: dict[str, list[ChildSpan]] = {}
    for record in events.runs(flow_id=plan.flow_id, limit=HISTORY_DEPTH):
        if wanted <= latest.keys():
            break
        stream = events.read_range(record.run_id)
        outcomes = state_outcomes(stream, record.run_id == live_run)
        fresh = {state_id for state_id in outcomes if state_id not in latest}
        for state_id, outcome in outcomes.items():
            latest.setdefault(state_id, outcome)
        if fresh and any(isinstance(e.event, ChildRunSpawned) for e in stream):
            for span in child_spans(stream):
                if span.state_id in fresh:
                    children.setdefault(span.state_id, []).append(span)
    stale = plan_staleness(events, plan, current) if current is not None else {}
    views = []
    for state in plan.states:
        found = latest.get(state.id)
        status = found.status if found else "pending"
        if state.id in restored and status != "running":
            status = "restored"
        if state.id in stale and status in _SETTLED:
            status = "stale"
        views.append(
            StateView(
                state.id,
                plan.upstream_of(state.id),
                status,
                found.attempt if found else None,
                found.duration_ms if found else None,
                found.error if found else None,
                stale.get(state.id),
            )
        )
        views += child_nodes(children.get(state.id, []))
    return PlanView(plan.flow_id, tuple(views))


def child_nodes(spans: list[ChildSpan]) -> list[StateView]:
    """A node per child run, after the state that started it."""
    return [
        StateView(
            row_name(span),
            (span.state_id,),
            span.view.status,
            last_duration_ms=span.view.duration_ms,
            child=span.view,
        )
        for span in spans
    ]


def run_bars(
    stream: list[EventEnvelope], size_of: Callable[[str], int | None] | None = None
) -> list[AttemptBar]:
    """A run's attempts and its child runs, on one time axis (the timeline's rows)."""
    return with_children(attempt_bars(stream, size_of), stream)


def session_bars(
    events: EventStore, run_ids: list[str], size_of: Callable[[str], int | None] | None = None
) -> list[AttemptBar]:
    """The attempts of several runs on one time axis, from the first run's start: the
    states a kernel ran in run mode, one-state run after one-state run."""
    found: list[AttemptBar] = []
    origin: int | None = None
    for run_id in run_ids:
        stream = events.read_range(run_id)
        if not stream:
            continue
        origin = stream[0].at_us if origin is None else origin
        shift = (stream[0].at_us - origin) // 1000
        found += [replace(bar, start_ms=bar.start_ms + shift) for bar in run_bars(stream, size_of)]
    return sorted(found, key=lambda bar: bar.start_ms)


def plan_staleness(
    events: EventStore, plan: Plan, current: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """``state id -> why it is stale``, for the plan's stale states (see
    :mod:`nbflow.engine.staleness`); ``current``: each state's facets as they are now."""
    try:
        states = topological_order(plan)
    except PlanError:  # a plan being declared may have a cycle: judged as declared
        states = list(plan.states)
    order = [(state.id, plan.upstream_of(state.id)) for state in states]
    done = last_completions(events, plan.flow_id, [state.id for state in plan.states])
    return stale_states(order, done, current)


_SETTLED = ("completed", "cached", "skipped", "restored")
"""Statuses that a stale mark replaces: the result is there, but out of date."""


def run_row(events: EventStore, record: RunRecord, states_total: int, live: bool) -> RunRow:
    """One line of the history."""
    stream = events.read_range(record.run_id)
    done = sum(isinstance(e.event, StateCompleted) for e in stream)
    status = record.status
    if status == "running" and not live:
        status = "interrupted"
    end = record.finished_us or record.updated_us
    parent = next((e.event for e in stream[:4] if isinstance(e.event, ChildOf)), None)
    children: tuple[ChildSpan, ...] = ()
    if any(isinstance(e.event, ChildRunSpawned) for e in stream):
        children = tuple(child_spans(stream))
    return RunRow(
        record.run_id,
        status,
        record.started_us,
        (end - record.started_us) // 1000,
        done,
        states_total,
        record.last_state,
        tuple(span.view for span in children),
        tuple(span.state_id for span in children),
        f"{parent.parent_run_id}:{parent.parent_state_id}" if parent is not None else None,
    )


def states_in_run(events: list[EventEnvelope], manifest_states: int | None) -> int:
    """How many states a run has: its manifest's count when known."""
    if manifest_states is not None:
        return manifest_states
    return len({e.event.state_id for e in events if isinstance(e.event, StateEntered)})


def banner_view(
    events: EventStore,
    flow_id: str,
    states_total: int,
    blocked: str | None = None,
    running: bool = False,
) -> BannerView | None:
    """The banner for the newest run of ``flow_id`` when it was interrupted; ``blocked``
    says why it cannot be resumed from here, if it cannot."""
    newest = events.runs(flow_id=flow_id, limit=1)
    if not newest or newest[0].status != "running":
        return None
    record = newest[0]
    stream = events.read_range(record.run_id)
    if not stream or not isinstance(stream[0].event, RunStarted):
        return None
    done = sum(isinstance(e.event, StateCompleted) for e in stream)
    # States the run's start already held (earlier cells in run mode) count as done.
    before = sum(len(e.event.states) for e in stream if isinstance(e.event, StatesSatisfied))
    return BannerView(
        record.run_id,
        flow_id,
        record.last_state,
        record.updated_us,
        done + before,
        states_total + before,
        blocked,
        running,
    )


def live_view(
    plan: Plan,
    stream: list[EventEnvelope],
    *,
    live: bool = True,
    stale: Mapping[str, str] | None = None,
) -> tuple[PlanView, int, str | None]:
    """A run's plan: its view, states done, and the current state. ``live``: the run is
    being driven now (otherwise an attempt left open was cut off: ``interrupted``).
    ``stale``: the states that were stale when the run started, shown as such until the
    run reaches them."""
    outcomes = state_outcomes(stream, live=live)
    done = sum(isinstance(e.event, StateCompleted) for e in stream)
    running = [s for s, o in outcomes.items() if o.status in ("running", "retrying")]
    current = ", ".join(running) if running else None  # several at once in a fan-out run
    stale = stale or {}
    spans: dict[str, list[ChildSpan]] = {}
    if any(isinstance(e.event, ChildRunSpawned) for e in stream):
        for span in child_spans(stream):
            spans.setdefault(span.state_id, []).append(span)
    views = []
    for state in plan.states:
        outcome = outcomes.get(state.id)
        status = outcome.status if outcome is not None else "pending"
        reason = stale.get(state.id) if outcome is None else None
        views.append(
            StateView(
                state.id,
                plan.upstream_of(state.id),
                "stale" if reason is not None else status,
                outcome.attempt if outcome is not None else None,
                outcome.duration_ms if outcome is not None else None,
                outcome.error if outcome is not None else None,
                reason,
            )
        )
        views += child_nodes(spans.get(state.id, []))
    return PlanView(plan.flow_id, tuple(views)), done, current


def snapshot_size(artifacts: ArtifactStore, snapshot_id: str) -> int | None:
    """Bytes of the variables a snapshot holds (for display; the bytes are not verified)."""
    data = artifacts.raw(snapshot_id)
    if data is None:
        return None
    if b'"nbflow.namespace"' not in data:
        return len(data)
    try:
        document = SnapshotDocument.from_bytes(data, snapshot_id)
    except NbflowError:
        return None
    return sum(variable.size for variable in document.variables)
