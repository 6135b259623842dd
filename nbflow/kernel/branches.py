"""How a kernel runs its states in worker processes (DESIGN §3 "Fan-out").

A state's code goes to a worker as text with the id of its base snapshot; what it prints
and displays comes back with its outcome and is shown in the cell that runs the plan,
state by state. When the run ends, its joined variables are put into ``user_ns``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nbflow.model.plan import StateSpec
from nbflow.parallel.branches import CodeBranch
from nbflow.parallel.outputs import notebook_outputs, show_outputs
from nbflow.parallel.runners import Branches
from nbflow.parallel.tasks import BranchOutcome, BranchTask
from nbflow.snapshot.filters import is_ipython_name

if TYPE_CHECKING:
    from nbflow.kernel.session import KernelSession


class KernelBranches(Branches):
    """The :class:`~nbflow.engine.fanout.BranchRunner` of a kernel."""

    def __init__(self, session: KernelSession) -> None:
        super().__init__()
        self._session = session
        self.collect_outputs = False
        """Keep what branches showed (``nbflow run`` puts it in their cells) instead of
        showing it in the running cell."""
        self.outputs: dict[str, list[dict[str, Any]]] = {}

    def task(self, spec: StateSpec, key: str, base_snapshot_id: str) -> BranchTask:
        session = self._session
        return CodeBranch(
            key, str(session.home.root), spec, base_snapshot_id, str(session.location.folder)
        )

    def received(self, spec: StateSpec, outcome: BranchOutcome) -> None:
        if self.collect_outputs:  # a notebook run: they go under the state's own cell
            self.outputs.setdefault(spec.id, []).extend(notebook_outputs(outcome.outputs))
        else:
            show_outputs(outcome.outputs)
        if outcome.notes:
            self._session.presenter.message(
                f"nbflow: {spec.id}: not saved: " + "; ".join(outcome.notes)
            )

    def current(self) -> dict[str, Any]:
        return self._session.shell.user_ns

    def waiting(self) -> None:
        self._session.presenter.live_tick()

    def joined(self, initial_snapshot_id: str, snapshot_id: str) -> None:
        session = self._session
        codec = session.snapshots
        before = set(codec.document(initial_snapshot_id).names())
        after = set(codec.document(snapshot_id).names())
        codec.restore(snapshot_id, into=session.shell.user_ns)
        for name in before - after:
            if not is_ipython_name(name):
                session.shell.user_ns.pop(name, None)
