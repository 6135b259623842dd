"""What the engine returns and the types of what it is given."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from nbflow.model.config import RunConfig
from nbflow.model.errors import ErrorInfo
from nbflow.model.events import DomainEvent, ReplayChecked
from nbflow.model.manifest import Manifest
from nbflow.model.plan import Plan, StateSpec

C = TypeVar("C")

Body = Callable[[C], C]
"""A state's code: receives the base snapshot's context and returns the new one."""

BodyResolver = Callable[[Manifest, StateSpec], Body[C]]
"""Finds the code of a state of a manifest: how a plan is rebuilt on resume."""


class RunPhase(str, Enum):
    """Where a run stands."""

    RUNNING = "running"
    """Not ended: stopped by a failpoint, an interrupt or a crash; resumable."""
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class RunResult:
    """The outcome of :meth:`Engine.start` or :meth:`Engine.resume`."""

    run_id: str
    phase: RunPhase
    final_snapshot_id: str | None
    failed_state: str | None = None
    """The state the run failed at, when it failed."""
    error: ErrorInfo | None = None
    """The last error of ``failed_state``."""
    replay: ReplayChecked | None = None
    """A replay that completed: whether it reproduced the replayed run's final snapshot."""

    def __str__(self) -> str:
        text = f"run {self.run_id[:8]} {self.phase.value}"
        if self.failed_state:
            text += f" at state {self.failed_state!r}"
        if self.error is not None:
            text += f": {self.error.message}"
        if self.replay is not None:
            text += f"; {replay_verdict(self.replay)}"
        return text


def replay_verdict(checked: ReplayChecked) -> str:
    """``reproduced run 3f2a1b0c exactly``, or which variables differ."""
    if checked.reproduced and checked.same_snapshot:
        return f"reproduced run {checked.of_run[:8]} exactly: the same final snapshot"
    if checked.reproduced:
        return (
            f"reproduced run {checked.of_run[:8]} exactly: every variable equal (stored "
            "in other bytes: restored objects pickle differently)"
        )
    if not checked.differing:
        return f"cannot compare with run {checked.of_run[:8]}: it did not complete"
    names = ", ".join(checked.differing[:10]) or "the context"
    more = f" and {len(checked.differing) - 10} more" if len(checked.differing) > 10 else ""
    return f"did not reproduce run {checked.of_run[:8]}: {names}{more} differ"


@dataclass(frozen=True)
class StartRequest(Generic[C]):
    """Everything a run is started with; the parts must agree with each other."""

    manifest: Manifest
    manifest_id: str
    plan: Plan
    run_config: RunConfig
    initial_context: C
    notes: tuple[DomainEvent, ...] = ()
    """Domain events recorded together with ``RunStarted``."""
    use_cache: bool = True
    """False (``--no-cache``): every state executes; results are still recorded."""
    run_id: str | None = None
    """The new run's id, when the caller fixed it (a child run: derived from its parent);
    otherwise a random one."""

    @classmethod
    def for_manifest(
        cls,
        manifest: Manifest,
        manifest_id: str,
        context: C,
        notes: tuple[DomainEvent, ...] = (),
        use_cache: bool = True,
        run_id: str | None = None,
    ) -> StartRequest[C]:
        """A request whose plan and run config are the manifest's own."""
        return cls(
            manifest,
            manifest_id,
            manifest.plan,
            manifest.run_config,
            context,
            notes,
            use_cache,
            run_id,
        )


class StateTimeout(Exception):  # noqa: N818 - reads as what happened, like TimeoutError
    """Raised by a state body that exceeded its ``timeout_ms``; always retryable."""
