"""A notebook executed as one fan-out run (``nbflow run --parallel N``), cell by cell.

Cells still run top to bottom, but a ``%%state`` cell only *releases* its state: it starts
in a worker as soon as its upstream is done, and the cell goes on at once. A plain cell is
a barrier: before it runs, every state released so far finishes and the kernel receives
their joined variables, so the cell sees what it would see in a sequential run. A state
marked ``--in-kernel`` runs in its own cell, as in a sequential run. What a branch showed
is kept, and ``nbflow run`` puts it under the branch's own cell when the run ends.
"""

from __future__ import annotations

from typing import Any

from nbflow.engine.core import CallBody, Steps, advance
from nbflow.engine.fanout import Barrier, Finish, Instruction, Parked, Release
from nbflow.engine.results import RunResult
from nbflow.kernel.execution import Shell
from nbflow.kernel.notebook_run import run_in_cell


class FanOutCellDriver:
    """Holds a fan-out run's steps between cells."""

    def __init__(self, steps: Steps) -> None:
        self._steps = steps
        self._pending: Any = None
        self.result: RunResult | None = None

    def prime(self) -> None:
        """Start the run now (on resume: the kernel receives the completed states'
        variables)."""
        if self._pending is None:
            self._pending = advance(self._steps, None, None)
            self._ended()

    async def run_state(
        self, shell: Shell, name: str, source: str, timeout_ms: int | None
    ) -> RunResult | None:
        """State ``name``'s cell: release it (and run it here if it runs in the kernel);
        the run's result if it ended meanwhile."""
        command = self._send(Release(name))
        while isinstance(command, CallBody):
            command = await run_in_cell(self._steps, command, shell, source, timeout_ms)
        self._pending = command
        return self._ended()

    def barrier(self) -> RunResult | None:
        """Before a plain cell: wait for the states released so far."""
        self._pending = self._send(Barrier())
        return self._ended()

    def finish(self) -> RunResult:
        """After the last cell: finish every state; the run's result."""
        self._pending = self._send(Finish())
        result = self._ended()
        assert result is not None, "a finished fan-out run returns its result"
        return result

    def _send(self, instruction: Instruction) -> Any:
        self.prime()
        if self.result is not None:
            return self.result
        assert isinstance(self._pending, Parked), "the run waits for its next cell"
        return advance(self._steps, instruction, None)

    def _ended(self) -> RunResult | None:
        if isinstance(self._pending, RunResult):
            self.result = self._pending
        return self.result
