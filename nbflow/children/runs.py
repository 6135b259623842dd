"""``nbflow.child`` and ``nbflow.run_child``: start, or re-attach to, a child run from
inside a state (DESIGN §3 "Child runs").

The parent's stream records ``ChildRunSpawned`` before the child starts. Retried or
resumed, the parent finds the record under the same key and re-attaches: a child that
ended is not run again (its result is read back), one still driven by a live process
(orphaned when its parent died) is waited for, and one that was cut off is resumed from
its own last checkpoint. None is started twice: the child's run id is derived from the
parent's run, state and key, and a run that exists is never started again.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbflow.children.targets import FlowTarget, NotebookTarget, Process, Target
from nbflow.engine.children import ChildRecord, child_run_id, default_key
from nbflow.engine.facts import CURRENT_SCOPE, FactScope, refuse_in_branch
from nbflow.errors import NbflowError
from nbflow.model.events import ChildOf, ChildRunJoined, ChildRunSpawned
from nbflow.model.parameters import encode_parameters
from nbflow.store import Home

_POLL_S = (0.02, 0.05, 0.1, 0.2)
"""Waiting for a child: quick checks first, then five times a second."""


class ChildVariables(Mapping[str, Any]):
    """The child's final variables, read-only, each loaded from its checkpoint when first
    read (buffers memory-mapped, not copied)."""

    def __init__(self, target: Target, snapshot_id: str | None, names: tuple[str, ...]) -> None:
        self._target = target
        self._snapshot_id = snapshot_id
        self._names = names
        self._loaded: dict[str, Any] = {}

    def __getitem__(self, name: str) -> Any:
        if name not in self._names or self._snapshot_id is None:
            raise KeyError(name)
        if name not in self._loaded:
            self._loaded.update(self._target.codec_restore(self._snapshot_id, [name]))
        return self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"<child variables: {', '.join(self._names)}>"


@dataclass(frozen=True)
class ChildResult:
    """A child run that ended."""

    run_id: str
    status: str
    """``completed``, ``failed`` or ``cancelled``."""
    variables: Mapping[str, Any]
    final_snapshot_id: str | None
    target: str
    error: str | None = None
    """Why it failed: the state and its error."""


@dataclass
class ChildRun:
    """A child run started (or re-attached to) by :func:`child`; :meth:`result` waits."""

    key: str
    run_id: str
    target: Target
    _record: ChildRecord
    _scope: FactScope | None
    _parent: ChildOf
    _process: Process | None = None
    _result: ChildResult | None = field(default=None, repr=False)

    def result(self, timeout: float | None = None) -> ChildResult:
        """Wait for the child to end (at most ``timeout`` seconds: ``TimeoutError``, the
        child goes on) and return its result; the first time, ``ChildRunJoined`` is
        recorded in the parent's stream."""
        if self._result is not None:
            return self._result
        deadline = None if timeout is None else time.monotonic() + timeout
        with Home(self.target.home) as home:
            ended = self._wait(home, deadline)
            result = self._read(home, ended)
        if self._record.joined is None:
            joined = ChildRunJoined(
                state_id=self._record.spawned.state_id,
                key=self.key,
                child_run_id=self.run_id,
                status=result.status,
                final_snapshot_id=result.final_snapshot_id,
            )
            if self._scope is not None and self._scope.append is not None:
                self._scope.append(joined)
            self._record.joined = joined
        self._result = result
        return result

    def __getstate__(self) -> dict[str, Any]:
        """Saved with the variables as a handle on the child's history: unpickled, it
        reads the result back and records nothing."""
        state = dict(self.__dict__)
        state["_scope"] = None
        state["_process"] = None
        return state

    def start(self) -> None:
        """Start the child, resume it, or find it ended or driven by another process."""
        with Home(self.target.home) as home:
            self._start_in(home)

    def _start_in(self, home: Home) -> None:
        record = home.events.run(self.run_id)
        if record is not None and record.status != "running":
            return  # ended: its result is read back
        if record is not None and home.leases.live_owner(self.run_id) is not None:
            return  # an orphan still driven by its process: waited for
        parameters = self._record.spawned.parameters
        self._process = self.target.launch(
            self.run_id, parameters, self._parent, resume=record is not None
        )

    def _wait(self, home: Home, deadline: float | None) -> str:
        polls = 0
        while True:
            record = home.events.run(self.run_id)
            if record is not None and record.status != "running":
                return record.status
            if self._process is not None and self._process.exited():
                record = home.events.run(self.run_id)
                if record is not None and record.status != "running":
                    return record.status
                if home.leases.live_owner(self.run_id) is not None:
                    # Ours lost the race to an orphan of an earlier parent: wait for that.
                    self._process = None
                    continue
                raise NbflowError(
                    "child_run_interrupted",
                    f"child run {self.run_id[:8]} ({self.target.name}) stopped before it "
                    "ended; resuming the parent resumes it",
                    name=self.run_id,
                    retryable=True,
                )
            if self._process is None and home.leases.live_owner(self.run_id) is None:
                # Not ended, and the process that drove it is gone (or it never started).
                self._process = self.target.launch(
                    self.run_id,
                    self._record.spawned.parameters,
                    self._parent,
                    resume=record is not None,
                )
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"child run {self.run_id[:8]} has not ended yet")
            time.sleep(_POLL_S[min(polls, len(_POLL_S) - 1)])
            polls += 1

    def _read(self, home: Home, status: str) -> ChildResult:
        from nbflow.engine.history import read_history

        history = read_history(self.run_id, home.events.read_range(self.run_id))
        final = history.run_completed.final_snapshot_id if history.run_completed else None
        error = None
        if history.last_failed_state is not None:
            failure = history.last_failure[history.last_failed_state]
            error = f"state {history.last_failed_state!r}: {failure.error.message}"
        names = self._names(home, final)
        return ChildResult(
            self.run_id,
            status,
            ChildVariables(self.target, final, names),
            final,
            self.target.name,
            error,
        )

    def _names(self, home: Home, snapshot_id: str | None) -> tuple[str, ...]:
        if snapshot_id is None:
            return ()
        if isinstance(self.target, NotebookTarget):
            from nbflow.snapshot import NamespaceCodec
            from nbflow.snapshot.document import VariableStatus

            document = NamespaceCodec(home.artifacts).document(snapshot_id)  # signed, hashed
            return tuple(v.name for v in document.variables if v.status == VariableStatus.STORED)
        return tuple(self.target.codec_restore(snapshot_id, None))


def child(
    target: Any, parameters: dict[str, Any] | None = None, *, key: str | None = None
) -> ChildRun:
    """Start, or re-attach to, a child run of ``target`` from inside a state.

    ``target`` is a notebook path (relative to this notebook's folder; run as ``nbflow run``
    runs it, with ``parameters`` injected after its ``parameters`` cell) or a
    :class:`~nbflow.Flow` (which starts from ``parameters`` as its context). Returns at
    once; :meth:`ChildRun.result` waits. ``key`` names the child within the state; without
    one, its target and parameters do. Children with different keys run at the same time.
    """
    scope = CURRENT_SCOPE.get()
    refuse_in_branch("nbflow.child", "child_in_branch")
    if scope is None or not scope.run_id:
        raise NbflowError(
            "child_outside_state",
            "nbflow.child starts a child run of the state that calls it, and no state runs",
            hint="call it inside a %%state cell, a state of `nbflow run`, or a Flow state",
        )
    resolved = _target(target)
    encoded = encode_parameters(parameters or {})
    name = key if key is not None else default_key(resolved.name, encoded)
    if not isinstance(name, str) or not name:
        raise NbflowError("child_key_invalid", f"a child's key is a non-empty string, not {key!r}")
    identity = (scope.state_id, name)
    record = scope.children.get(identity)
    if scope.replayed_children is not None and record is None:
        record = _replayed(scope, identity, name)
    if record is None:
        spawned = ChildRunSpawned(
            state_id=scope.state_id,
            key=name,
            child_run_id=child_run_id(scope.run_id, scope.state_id, name),
            target=resolved.name,
            home=str(resolved.home),
            parameters=encoded,
        )
        if scope.append is not None:
            scope.append(spawned)  # recorded before the child starts
        record = ChildRecord(spawned)
        scope.children[identity] = record
    elif record.spawned.target != resolved.name or record.spawned.parameters != encoded:
        raise NbflowError(
            "child_key_reused",
            f"child {name!r} of state {scope.state_id!r} was started with "
            f"{record.spawned.target} and other parameters; a key names one child",
            name=name,
            hint="give each child its own key",
        )
    parent = ChildOf(
        parent_run_id=scope.run_id,
        parent_state_id=scope.state_id,
        key=name,
        parent_home=scope.home,
    )
    run = ChildRun(name, record.spawned.child_run_id, resolved, record, scope, parent)
    if record.joined is None:
        run.start()
    return run


def run_child(
    target: Any, parameters: dict[str, Any] | None = None, *, key: str | None = None
) -> ChildResult:
    """``child(target, parameters, key=key).result()``."""
    return child(target, parameters, key=key).result()


def _target(target: Any) -> Target:
    from nbflow.flow import Flow

    if isinstance(target, Flow):
        return FlowTarget(target)
    if isinstance(target, (str, Path)):
        if not str(target).endswith(".ipynb"):
            raise NbflowError(
                "child_target_invalid",
                f"{str(target)!r} is not a notebook (.ipynb)",
                name=str(target),
            )
        return NotebookTarget(Path(target), Path.cwd())
    raise NbflowError(
        "child_target_invalid",
        f"a child run's target is a notebook path or a Flow, not {type(target).__name__}",
    )


def _replayed(scope: FactScope, identity: tuple[str, str], name: str) -> ChildRecord:
    """In a replay: the replayed run's child, recorded in this run too; ``fact_missing``
    when it has none that ended."""
    assert scope.replayed_children is not None
    held = scope.replayed_children.get(identity)
    if held is None or held.joined is None:
        raise NbflowError(
            "fact_missing",
            f"this run replays run {scope.replay_of[:8]}, which recorded no result for child "
            f"{name!r} of state {scope.state_id!r}; nothing was started",
            name=name,
            hint="a replay only serves what the replayed run recorded",
            retryable=False,
        )
    if scope.append is not None:
        scope.append(held.spawned)
        scope.append(held.joined)
    record = ChildRecord(held.spawned, held.joined)
    scope.children[identity] = record
    return record
