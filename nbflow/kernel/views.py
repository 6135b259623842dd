"""Building the presentation's views from the event store."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

from nbflow.engine.contract import read_manifest
from nbflow.engine.plan import topological_order
from nbflow.engine.staleness import HISTORY_DEPTH, last_completions, stale_states
from nbflow.errors import NbflowError, PlanError
from nbflow.kernel.attempts import AttemptFold, StateOutcome
from nbflow.kernel.child_views import ChildSpan, child_spans, row_name, with_children
from nbflow.model.events import (
    ChildOf,
    ChildRunSpawned,
    EventEnvelope,
    RunStarted,
    StateCompleted,
    StateEntered,
    StatesSatisfied,
)
from nbflow.model.plan import Plan
from nbflow.snapshot.document import SnapshotDocument
from nbflow.store.artifacts import ArtifactStore
from nbflow.store.events import EventStore, RunRecord
from nbflow.ui.model import RUNS_PAGE, AttemptBar, BannerView, PlanView, RunRow, StateView


def attempt_bars(
    events: list[EventEnvelope], size_of: Callable[[str], int | None] | None = None
) -> list[AttemptBar]:
    """Every attempt of a run (and every backoff wait) as a bar on the run's time axis,
    in the order they started; ``size_of`` gives the size of a completed attempt's
    snapshot (see :class:`AttemptFold`)."""
    return AttemptFold(size_of).add_all(events).bars()


def state_outcomes(events: list[EventEnvelope], live: bool) -> dict[str, StateOutcome]:
    """Each state's last attempt in one run; ``live``: the run is being driven right now."""
    return AttemptFold().add_all(events).outcomes(live)


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
    upstream = plan.upstream_map()
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
                upstream[state.id],
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
    upstream = plan.upstream_map()
    order = [(state.id, upstream[state.id]) for state in states]
    done = last_completions(events, plan.flow_id, [state.id for state in plan.states])
    return stale_states(order, done, current)


_SETTLED = ("completed", "cached", "skipped", "restored")
"""Statuses that a stale mark replaces: the result is there, but out of date."""


class StateCounts:
    """How many states each run's plan has, read from its manifest once per manifest
    (runs of one notebook share a few manifests; manifests never change)."""

    def __init__(self, artifacts: ArtifactStore) -> None:
        self._artifacts = artifacts
        self._known: dict[str, int] = {}

    def __call__(self, manifest_id: str | None) -> int:
        """The number of states of ``manifest_id``'s plan (0 when unknown)."""
        if manifest_id is None:
            return 0
        found = self._known.get(manifest_id)
        if found is None:
            try:
                manifest = read_manifest(self._artifacts, manifest_id, trusted=False)
                found = len(manifest.plan.states)
            except NbflowError:
                return 0
            self._known[manifest_id] = found
        return found


def run_page(
    events: EventStore,
    counts: StateCounts,
    flow_id: str | None,
    offset: int = 0,
    limit: int | None = RUNS_PAGE,
) -> list[RunRow]:
    """The history's rows from ``offset`` (newest first), at most ``limit``."""
    records = events.runs(flow_id=flow_id, limit=limit, offset=offset)
    return [run_row(events, record, counts(record.manifest_id), False) for record in records]


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
    fold = AttemptFold().add_all(stream)
    spans = child_spans(stream) if any(isinstance(e.event, ChildRunSpawned) for e in stream) else []
    view = run_plan_view(plan, plan.upstream_map(), fold, live, stale or {}, spans)
    running = [s.state_id for s in view.states if s.status in ("running", "retrying")]
    return view, fold.completed, ", ".join(running) if running else None


def run_plan_view(
    plan: Plan,
    upstream: Mapping[str, tuple[str, ...]],
    fold: AttemptFold,
    live: bool,
    stale: Mapping[str, str],
    spans: list[ChildSpan],
) -> PlanView:
    """The plan of one run as its events so far (folded in ``fold``) left it, with a node
    per child run (``spans``) after the state that started it."""
    outcomes = fold.outcomes(live)
    by_state: dict[str, list[ChildSpan]] = {}
    for span in spans:
        by_state.setdefault(span.state_id, []).append(span)
    views = []
    for state in plan.states:
        outcome = outcomes.get(state.id)
        status = outcome.status if outcome is not None else "pending"
        reason = stale.get(state.id) if outcome is None else None
        views.append(
            StateView(
                state.id,
                upstream[state.id],
                "stale" if reason is not None else status,
                outcome.attempt if outcome is not None else None,
                outcome.duration_ms if outcome is not None else None,
                outcome.error if outcome is not None else None,
                reason,
            )
        )
        views += child_nodes(by_state.get(state.id, []))
    return PlanView(plan.flow_id, tuple(views))


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
