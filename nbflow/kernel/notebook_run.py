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

from nbflow.engine.core import CallBody, Served, Starting, Steps, Wait, advance
from nbflow.engine.results import RunResult
from nbflow.kernel.execution import Shell, run_state_code


async def run_in_cell(
    steps: Steps, command: CallBody[Any], shell: Shell, source: str, timeout_ms: int | None
) -> Any:
    """Run ``command``'s state code in the cell being executed and hand its outcome (the
    namespace, or what it raised) to ``steps``; their next command."""
    try:
        with command.facts():
            await run_state_code(shell, command.spec.id, source, timeout_ms)
    except BaseException as exc:  # handed to the run's steps, which decide
        return advance(steps, None, exc)
    return advance(steps, shell.user_ns, None)


class CellDriver:
    """Holds a run's steps between cells and advances them when a state cell arrives.

    The engine announces each state (:class:`Starting`) before doing anything of it, so
    that all a state does, and all it says (restored from the cache, retried, failed),
    happens inside its own cell.
    """

    def __init__(self, steps: Steps) -> None:
        self._steps = steps
        self._pending: Any = None  # the next command; never Parked (a sequential run)
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
        assert command is not None
        began = False  # whether this cell has run (or been served) an attempt of ``name``
        while True:
            if isinstance(command, RunResult):
                break
            if isinstance(command, Wait):  # the backoff before a retry of ``name``
                await asyncio.sleep(command.seconds)
                command = advance(self._steps, None, None)
                continue
            state_id = command.spec.id if isinstance(command, CallBody) else command.state_id
            if state_id != name:
                if began:
                    break  # the next state's own cell goes on from here
                self._pending = command
                raise self._out_of_order(state_id, name)
            began = True
            if isinstance(command, Starting):
                command = advance(self._steps, None, None)
            elif isinstance(command, Served):
                command = advance(self._steps, None, None)  # cached: the code does not run
            else:
                command = await run_in_cell(self._steps, command, shell, source, timeout_ms)
        self._pending = command
        return self._ended()

    def _ended(self) -> RunResult | None:
        if isinstance(self._pending, RunResult):
            self.result = self._pending
            return self._pending
        return None

    @staticmethod
    def _out_of_order(expected: str, name: str) -> UsageError:
        return UsageError(
            f"nbflow run: the notebook's run expects state {expected!r} next, not {name!r}; "
            "was the notebook changed while it ran?"
        )
