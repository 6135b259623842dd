"""A whole notebook executed as one run, driven cell by cell (``nbflow run``).

``nbflow run`` executes a notebook top to bottom. The plan is its ``%%state`` cells, and
the run's steps (see :mod:`nbflow.engine.core`) advance one ``%%state`` cell at a time:
each state's body runs inside its own cell, so its outputs land under that cell, and
retries, failures and checkpoints follow the engine's semantics exactly.
"""

from __future__ import annotations

import asyncio
from typing import Any

from IPython.core.error import UsageError

from nbflow.engine.core import CallBody, Served, Steps, Wait, advance
from nbflow.engine.results import RunResult
from nbflow.kernel.execution import Shell, run_state_code


class CellDriver:
    """Holds a run's steps between cells and advances them when a state cell arrives."""

    def __init__(self, steps: Steps) -> None:
        self._steps = steps
        self._pending: CallBody[Any] | Wait | Served | RunResult | None = None
        self.result: RunResult | None = None

    def prime(self) -> None:
        """Advance to the first state now (on resume: restores the checkpoint first)."""
        if self._pending is None:
            self._pending = advance(self._steps, None, None)

    async def run_state(
        self, shell: Shell, name: str, source: str, timeout_ms: int | None
    ) -> RunResult | None:
        """Run state ``name``'s cell; the run's result once its last state has run."""
        self.prime()
        command = self._pending
        while True:
            if isinstance(command, RunResult):
                self.result = command
                return command
            if isinstance(command, Wait):
                await asyncio.sleep(command.seconds)
                command = advance(self._steps, None, None)
                continue
            if isinstance(command, Served):
                if command.state_id != name:
                    self._pending = command
                    raise self._out_of_order(command.state_id, name)
                # Restored from the cache: this cell's code does not run.
                command = advance(self._steps, None, None)
                self._pending = command
                if isinstance(command, RunResult):
                    self.result = command
                    return command
                return None
            assert command is not None
            if command.spec.id != name:
                self._pending = command
                raise self._out_of_order(command.spec.id, name)
            try:
                with command.facts():
                    await run_state_code(shell, name, source, timeout_ms)
            except BaseException as exc:  # handed to the run's steps, which decide
                command = advance(self._steps, None, exc)
            else:
                command = advance(self._steps, shell.user_ns, None)
            if isinstance(command, CallBody) and command.spec.id == name:
                continue  # retried at once
            if isinstance(command, Wait):
                continue  # retried after the backoff
            self._pending = command
            if isinstance(command, RunResult):
                self.result = command
                return command
            return None

    @staticmethod
    def _out_of_order(expected: str, name: str) -> UsageError:
        return UsageError(
            f"nbflow run: the notebook's run expects state {expected!r} next, not {name!r}; "
            "was the notebook changed while it ran?"
        )
