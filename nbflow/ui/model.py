"""Plain data the presenters draw; built from the stores by :mod:`nbflow.kernel.views`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

RUNS_PAGE = 20
"""Runs listed at once (a screenful); the rest are a page away."""

STATUSES = (
    "pending",
    "running",
    "completed",
    "cached",
    "stale",
    "skipped",
    "failed",
    "retrying",
    "interrupted",
    "restored",
)
"""``cached``: served from an earlier attempt; ``skipped``: not run, its tag was in the
run's ``skip_tags``; ``stale``: completed, but its code, what it
uses, its input files or an upstream state changed since (see
:mod:`nbflow.engine.staleness`)."""


@dataclass(frozen=True)
class ChildView:
    """A child run started by a state (``nbflow.child``)."""

    run_id: str
    target: str
    """``notebook:PATH`` or ``flow:NAME``."""
    status: str
    """A status of :data:`STATUSES` (``pending`` until it started)."""
    duration_ms: int | None = None

    @property
    def short_target(self) -> str:
        """The notebook's file name, or the flow's name."""
        kind, _, name = self.target.partition(":")
        return name.rsplit("/", 1)[-1] if kind == "notebook" else name

    def hover(self) -> str:
        """What the picture says of it on hover."""
        lines = [
            f"child run {self.run_id[:8]} of {self.target}",
            f"status: {self.status}",
        ]
        if self.duration_ms is not None:
            lines.append(f"duration: {self.duration_ms / 1000:.1f} s")
        lines.append(f"its own timeline: %flow timeline {self.run_id[:8]}")
        return "\n".join(lines)


@dataclass(frozen=True)
class StateView:
    """One state of the plan with its latest status."""

    state_id: str
    upstream: tuple[str, ...]
    status: str
    """One of :data:`STATUSES`."""
    last_attempt: int | None = None
    last_duration_ms: int | None = None
    last_error: str | None = None
    stale: str | None = None
    """Why the state is stale, when it is."""
    child: ChildView | None = None
    """Set for a node that is a child run of its (one) upstream state, not a state."""
    members: tuple[str, ...] = ()
    """Set for a node that stands for a chain of states of a large plan: their ids, in
    order (see :mod:`nbflow.ui.dag_groups`)."""
    member_statuses: tuple[str, ...] = ()
    """The status of each of ``members``."""


@dataclass(frozen=True)
class PlanView:
    """The plan, in topological order."""

    flow_id: str
    states: tuple[StateView, ...]


@dataclass(frozen=True)
class RunRow:
    """One run in the history."""

    run_id: str
    status: str
    """``running`` runs that no kernel drives are shown as ``interrupted``."""
    started_us: int
    duration_ms: int | None
    states_done: int
    states_total: int
    last_state: str | None
    children: tuple[ChildView, ...] = ()
    """The child runs its states started, in spawn order."""
    child_states: tuple[str, ...] = ()
    """The state that started each of ``children``."""
    parent: str | None = None
    """``RUN:STATE`` of the parent, for a child run."""


@dataclass(frozen=True)
class AttemptBar:
    """One attempt of one state on the run's time axis."""

    state_id: str
    attempt: int
    start_ms: int
    """Milliseconds since the run started."""
    duration_ms: int
    outcome: str
    """``completed``, ``cached``, ``skipped``, ``failed``, ``interrupted``, ``running`` or
    ``backoff``."""
    error: str | None = None
    snapshot_bytes: int | None = None
    """Size of the variables a completed attempt checkpointed, when known."""
    child: ChildView | None = None
    """Set for the bar of a child run (its row is named after the state and the child)."""
    worker: str | None = None
    """The worker process an attempt of a fan-out run ran on."""


@dataclass(frozen=True)
class BannerView:
    """What the restart banner says about an interrupted run."""

    run_id: str
    flow_id: str
    state_id: str | None
    interrupted_at_us: int
    states_done: int
    states_total: int
    blocked: str | None = None
    """Why the run cannot be resumed from here (made elsewhere, running elsewhere); the
    banner then says so and offers no Resume."""
    running: bool = False
    """The run is being driven right now by another process (not interrupted)."""


@dataclass(frozen=True)
class LiveFrame:
    """A run in progress at one moment: what its live DAG shows."""

    nodes: tuple[str, ...]
    """The picture's nodes (states, then child runs as they start): when they change, the
    plan is laid out again."""
    statuses: dict[str, str]
    """Each node's status."""
    done: int
    total: int
    current: str | None
    """The states running now (several in a fan-out run), or ``None``."""


class LiveSource(Protocol):
    """A run in progress, read by the presenter when it draws (from any thread)."""

    def frame(self) -> LiveFrame:
        """The run as it is now."""
        ...

    def view(self) -> PlanView:
        """The run's plan as it is now, with every detail (to lay it out)."""
        ...
