"""Kernel and domain events and the envelope they are stored in.

Kernel events decide how a run resumes. Domain events (facts, notes, interruptions) share
the stream for the timeline and for :func:`nbflow.fact`, and never change kernel semantics.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nbflow.model.config import FORMAT_VERSION
from nbflow.model.errors import ErrorInfo
from nbflow.model.lease import LeaseOwner
from nbflow.model.plan import StateSpec


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RunStatus(str, Enum):
    """Terminal status recorded by ``RunCompleted``."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunStarted(_Event):
    """A run began from ``manifest_id`` with the variables of ``initial_snapshot_id``."""

    kind: Literal["run_started"] = "run_started"
    op_id: str = Field(description="The flow id.")
    manifest_id: str
    initial_snapshot_id: str


class StateEntered(_Event):
    """Attempt ``attempt`` of ``state_id`` began from ``base_snapshot_id``."""

    kind: Literal["state_entered"] = "state_entered"
    state_id: str
    attempt: int = Field(ge=0)
    base_snapshot_id: str


class StateCompleted(_Event):
    """The open attempt of ``state_id`` succeeded and left ``context_snapshot_id``."""

    kind: Literal["state_completed"] = "state_completed"
    state_id: str
    context_snapshot_id: str


class StateFailed(_Event):
    """Attempt ``attempt`` of ``state_id`` failed with ``error``."""

    kind: Literal["state_failed"] = "state_failed"
    state_id: str
    attempt: int = Field(ge=0)
    error: ErrorInfo


class RunCompleted(_Event):
    """The run ended; nothing is appended after this."""

    kind: Literal["run_completed"] = "run_completed"
    status: RunStatus
    final_snapshot_id: str | None = None


class CheckpointsDiscarded(_Event):
    """The checkpoints of ``states`` are damaged or missing: the run goes back to
    ``snapshot_id``, the newest intact checkpoint, and those states run again.

    A kernel event: after it, ``states`` are no longer completed and the open attempt,
    if any, is closed. nbflow's addition to the reference engine (docs/decisions.md).
    """

    kind: Literal["checkpoints_discarded"] = "checkpoints_discarded"
    states: list[str]
    snapshot_id: str = Field(description="The checkpoint the run continues from.")
    damaged_snapshot_id: str
    reason: str


class FactRecorded(_Event):
    """Domain: the value ``nbflow.fact(key, ...)`` returned in this run: small JSON inline
    in ``value``, anything else held by the snapshot ``snapshot_id``."""

    kind: Literal["fact_recorded"] = "fact_recorded"
    key: str
    value: Any = None
    snapshot_id: str | None = None


class AttemptInterrupted(_Event):
    """Domain: the user interrupted the open attempt; it stays open and resumable."""

    kind: Literal["attempt_interrupted"] = "attempt_interrupted"
    state_id: str
    attempt: int = Field(ge=0)
    reason: str = "KeyboardInterrupt"


class RetryScheduled(_Event):
    """Domain: a failed attempt will be retried after ``delay_ms``."""

    kind: Literal["retry_scheduled"] = "retry_scheduled"
    state_id: str
    next_attempt: int = Field(ge=1)
    delay_ms: int = Field(ge=0)


class StatesSatisfied(_Event):
    """Domain: the run's initial variables already hold the effects of ``states``.

    Written with ``RunStarted`` by the kernel, where a state cell runs as its own run
    after its upstream states ran as theirs. ``replay`` are the specs of the always-run
    states among them, re-executed after the run's variables are restored.
    """

    kind: Literal["states_satisfied"] = "states_satisfied"
    states: list[str]
    replay: list[StateSpec] = Field(default_factory=list)


class LeaseTakenOver(_Event):
    """Domain: the process that drove the run is gone; this one took the run over."""

    kind: Literal["lease_taken_over"] = "lease_taken_over"
    previous: LeaseOwner
    reason: str = Field(description="How the previous owner was found gone.")


class StateCached(_Event):
    """Domain: the open attempt of ``state_id`` was served from the cache: the outputs of
    ``from_state`` in run ``from_run`` (same key) were put back, and its code did not run."""

    kind: Literal["state_cached"] = "state_cached"
    state_id: str
    from_run: str
    from_state: str
    key: str
    saved_ms: int = Field(default=0, ge=0, description="How long the reused attempt ran.")
    computed_us: int = Field(default=0, description="When the reused result was computed.")


class StateKeyed(_Event):
    """Domain: the key the open attempt of ``state_id`` was computed under (for staleness
    and for the cache); ``reason`` says why there is none, when there is none."""

    kind: Literal["state_keyed"] = "state_keyed"
    state_id: str
    key: str | None = None
    reason: str | None = None
    facets: dict[str, str] = Field(default_factory=dict)
    """Keys of the parts of ``key`` that can be judged without the data (``code``,
    ``uses``, ``inputs``): what staleness compares before the state runs again."""


class StateSkipped(_Event):
    """Domain: ``state_id`` carries ``tags`` of the run's ``skip_tags``: it was entered and
    completed on its base snapshot, and its code did not run."""

    kind: Literal["state_skipped"] = "state_skipped"
    state_id: str
    tags: tuple[str, ...]


class ReplayChecked(_Event):
    """Domain: this replay ended; ``reproduced`` when its final variables equal those of
    ``of_run``, the run it replayed (``same_snapshot``: byte for byte, the same snapshot
    id), else ``differing`` names the variables that differ."""

    kind: Literal["replay_checked"] = "replay_checked"
    of_run: str
    reproduced: bool
    same_snapshot: bool = False
    differing: tuple[str, ...] = ()


class ChildRunSpawned(_Event):
    """Domain: state ``state_id`` starts (or re-attaches to) child run ``child_run_id``,
    recorded before the child starts. ``key`` is its identity within the state (the
    caller's, else a hash of target and parameters); ``target`` names the notebook
    (``notebook:PATH``) or flow (``flow:NAME``), ``home`` the history it runs in."""

    kind: Literal["child_run_spawned"] = "child_run_spawned"
    state_id: str
    key: str
    child_run_id: str
    target: str
    home: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    """Encoded as a manifest's parameters (no JSON float)."""


class ChildRunJoined(_Event):
    """Domain: the result of child run ``child_run_id`` was first taken by the parent."""

    kind: Literal["child_run_joined"] = "child_run_joined"
    state_id: str
    key: str
    child_run_id: str
    status: str
    """``completed``, ``failed`` or ``cancelled``."""
    final_snapshot_id: str | None = None


class ChildOf(_Event):
    """Domain, first after ``RunStarted`` in a child's stream: its parent run and state."""

    kind: Literal["child_of"] = "child_of"
    parent_run_id: str
    parent_state_id: str
    key: str
    parent_home: str


class FanOutStarted(_Event):
    """Domain: the run runs states with no path between them at once (DESIGN §3
    "Fan-out"); from here on its stream may hold several open attempts, one per state.
    Recorded with RunStarted, and again by each resume, naming where branches run."""

    kind: Literal["fan_out_started"] = "fan_out_started"
    max_parallel: int = Field(ge=1)
    executor: str = Field(description="Where branches run: ``local`` or a Dask address.")


class BranchAssigned(_Event):
    """Domain: an attempt of a state runs on a worker process (not in the kernel)."""

    kind: Literal["branch_assigned"] = "branch_assigned"
    state_id: str
    attempt: int = Field(ge=0)
    worker: str = Field(description="The worker's label: pool slot and pid, or Dask address.")


class Note(_Event):
    """Domain: free text attached to the run by the user."""

    kind: Literal["note"] = "note"
    text: str


KernelEvent = (
    RunStarted | StateEntered | StateCompleted | StateFailed | RunCompleted | CheckpointsDiscarded
)
DomainEvent = (
    FactRecorded
    | AttemptInterrupted
    | RetryScheduled
    | StatesSatisfied
    | LeaseTakenOver
    | StateCached
    | StateKeyed
    | StateSkipped
    | ReplayChecked
    | ChildRunSpawned
    | ChildRunJoined
    | ChildOf
    | FanOutStarted
    | BranchAssigned
    | Note
)
Event = Annotated[
    RunStarted
    | StateEntered
    | StateCompleted
    | StateFailed
    | RunCompleted
    | CheckpointsDiscarded
    | FactRecorded
    | AttemptInterrupted
    | RetryScheduled
    | StatesSatisfied
    | LeaseTakenOver
    | StateCached
    | StateKeyed
    | StateSkipped
    | ReplayChecked
    | ChildRunSpawned
    | ChildRunJoined
    | ChildOf
    | FanOutStarted
    | BranchAssigned
    | Note,
    Field(discriminator="kind"),
]
KERNEL_KINDS = frozenset(
    {
        "run_started",
        "state_entered",
        "state_completed",
        "state_failed",
        "run_completed",
        "checkpoints_discarded",
    }
)


class EventEnvelope(BaseModel):
    """One stored event: ``seq`` numbers a run's events 1, 2, … without gaps."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format_version: int = Field(
        default=FORMAT_VERSION,
        ge=1,
        le=FORMAT_VERSION,
        description="Envelope format; an event from a newer nbflow is refused.",
    )
    run_id: str
    seq: int = Field(ge=1)
    at_us: int = Field(description="Wall-clock time in microseconds since the epoch.")
    event: Event


def is_kernel(event: Event) -> bool:
    """Whether ``event`` takes part in deciding how the run resumes."""
    return event.kind in KERNEL_KINDS
