"""How a :class:`~nbflow.Flow` runs its states in worker processes: each function is
pickled by value (cloudpickle), so functions defined in a script or a notebook travel."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cloudpickle

from nbflow.model.plan import StateSpec
from nbflow.parallel.branches import CallableBranch
from nbflow.parallel.runners import Branches
from nbflow.parallel.tasks import BranchOutcome, BranchTask


class FlowBranches(Branches):
    """The :class:`~nbflow.engine.fanout.BranchRunner` of a ``Flow``."""

    def __init__(self, home: str, body_of: Callable[[str], Any]) -> None:
        super().__init__()
        self._home = home
        self._body_of = body_of

    def task(self, spec: StateSpec, key: str, base_snapshot_id: str) -> BranchTask:
        body = cloudpickle.dumps(self._body_of(spec.id))
        return CallableBranch(key, self._home, spec, base_snapshot_id, body)

    def received(self, spec: StateSpec, outcome: BranchOutcome) -> None:
        pass  # a Flow's functions print in their worker's own streams

    def current(self) -> Any:
        raise NotImplementedError("a Flow is not driven cell by cell")

    def waiting(self) -> None:
        pass

    def joined(self, initial_snapshot_id: str, snapshot_id: str) -> None:
        pass  # the run's result names the joined snapshot
