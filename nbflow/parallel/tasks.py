"""What travels between the driving process and a worker: a task out, an outcome back."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from nbflow.model.errors import ErrorInfo
from nbflow.model.plan import StateSpec
from nbflow.parallel.outputs import OutputRecord

if TYPE_CHECKING:
    from nbflow.parallel.worker import WorkerState


class BranchTask(Protocol):
    """One attempt of one state, runnable in a worker process. Picklable."""

    @property
    def key(self) -> str:
        """Unique per attempt: ``nbflow-<run>-<state>-<attempt>``."""
        ...

    @property
    def spec(self) -> StateSpec:
        """The state this is an attempt of."""
        ...

    @property
    def home(self) -> str:
        """The ``.nbflow`` folder whose artifacts the base snapshot and outputs live in."""
        ...

    def run(self, worker: WorkerState) -> BranchOutcome:
        """Restore the base, run the state's code, store what it changed."""
        ...


@dataclass(frozen=True)
class BranchOutcome:
    """What an attempt in a worker left: a snapshot, or the error its code raised."""

    snapshot_id: str | None
    changed: tuple[str, ...] = ()
    """Variables the state created or changed in value."""
    removed: tuple[str, ...] = ()
    """Variables the state deleted."""
    error: ErrorInfo | None = None
    outputs: tuple[OutputRecord, ...] = ()
    worker: str = ""
    notes: tuple[str, ...] = ()
    """What the capture did not save (withheld, skipped), to tell the user."""
    seconds: dict[str, float] = field(default_factory=dict)
    """Where the time went: ``restore``, ``run``, ``capture``."""


@dataclass(frozen=True)
class Finished:
    """An executor's report of one task: its outcome, or why it has none."""

    key: str
    outcome: BranchOutcome | None
    lost: str | None = None
    """The worker died or the task was lost (the attempt is orphaned): why."""
    worker: str = ""
