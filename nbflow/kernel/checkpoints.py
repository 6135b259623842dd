"""Finding what a kernel command names in a notebook's history: a run by its id's prefix,
the checkpoints ``%flow restore`` may use, and what restoring one of them stands for."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import Any

from IPython.core.error import UsageError

from nbflow.engine import Engine
from nbflow.engine.history import RunHistory
from nbflow.hashing.ids import is_content_id
from nbflow.kernel.usage import usage
from nbflow.model.events import StatesSatisfied
from nbflow.model.manifest import Manifest
from nbflow.model.plan import StateSpec
from nbflow.store import Home

Checkpoint = tuple[str, str | None, str | None]
"""``(snapshot id, run id, state id)``; the last two are None for a snapshot named by id."""


def resolve_run(home: Home, flow_id: str, prefix: str | None, *, interrupted: bool) -> str:
    """The run named by ``prefix``; without one, the notebook's newest (interrupted) run."""
    if prefix is None:
        status = "running" if interrupted else None
        for record in home.events.runs(flow_id=flow_id, limit=1, status=status):
            return record.run_id
        kind = "interrupted run" if interrupted else "run"
        raise UsageError(f"nbflow: {flow_id} has no {kind}")
    return usage(lambda: home.events.run_named(prefix))


def restore_candidates(
    home: Home,
    engine: Engine[dict[str, Any]],
    flow_id: str,
    target: str | None,
    run: str | None,
) -> Iterator[Checkpoint]:
    """The checkpoints ``%flow restore`` may use, best first: the one asked for, or without
    a target every completed state of the runs, newest first (the fallbacks when the
    newest is damaged)."""
    if target is not None and target.startswith("blake3:"):
        if not is_content_id(target):
            raise UsageError(
                f"%flow restore: {target!r} is not a snapshot id (blake3:<64 hex digits>)"
            )
        if not home.artifacts.exists(target):
            raise UsageError(f"%flow restore: snapshot {target} is not in {home.root}")
        yield target, None, None
        return
    runs = (
        [resolve_run(home, flow_id, run, interrupted=False)]
        if run
        else [r.run_id for r in home.events.runs(flow_id=flow_id)]
    )
    found = False
    for run_id in runs:
        history = usage(partial(engine.history, run_id))
        if target is not None:
            if target in history.completed:
                found = True
                yield history.completed[target], run_id, target
                return
            continue
        for state_id in reversed(history.completed):
            found = True
            yield history.completed[state_id], run_id, state_id
    if not found:
        where = f"run {runs[0][:8]}" if run else f"any run of {flow_id}"
        what = f"state {target!r}" if target else "any state"
        raise UsageError(f"%flow restore: {what} has not completed in {where}")


def restored_effects(
    home: Home, run_id: str, history: RunHistory, manifest: Manifest, upto: str | None
) -> tuple[set[str], list[StateSpec]]:
    """The states whose effects a checkpoint of ``run_id`` holds, and the always-run
    states to execute again after restoring it (up to and including state ``upto``)."""
    stream = home.events.read_range(run_id)
    noted = next((e.event for e in stream if isinstance(e.event, StatesSatisfied)), None)
    satisfied = set(noted.states) if noted else set()
    replay = list(noted.replay) if noted else []
    for state_id in history.completed:
        satisfied.add(state_id)
        spec = manifest.plan.state(state_id)
        if spec.always_run:
            replay.append(spec)
        if state_id == upto:
            break
    return satisfied, replay
