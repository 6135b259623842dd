"""Running a state's code through IPython, as a cell of its own.

State code runs with ``await shell.run_cell_async(...)`` from inside the cell that holds
the ``%%state`` magic, which is itself made a coroutine cell. So magics, ``!shell``,
top-level ``await``, rich display of the last expression and IPython's tracebacks all work,
on the kernel's main thread and event loop, without a nested event loop.

Interrupts: while a coroutine cell runs, ipykernel turns SIGINT into a cancellation of the
cell's task, which blocking code never sees. While state code runs, a SIGINT handler
raises ``KeyboardInterrupt`` if a task step is executing (blocking code), and otherwise
leaves it to ipykernel. ``--timeout`` uses SIGALRM the same way.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, Protocol

from nbflow.engine.results import StateTimeout
from nbflow.errors import NbflowError


class Shell(Protocol):
    """The parts of IPython's ``InteractiveShell`` the executor uses."""

    user_ns: dict[str, Any]
    events: Any
    display_pub: Any

    def transform_cell(self, raw_cell: str) -> str: ...

    async def run_cell_async(self, raw_cell: str, **kwargs: Any) -> Any: ...


class StateSyntaxError(NbflowError):
    """The state's code cannot be compiled; retrying would not help."""


def state_cell_source(name: str, source: str) -> str:
    """The text run for a state: a comment standing where the ``%%state`` line was, so
    that traceback line numbers are those of the notebook cell."""
    return f"# %%state {name}\n{source}"


async def run_state_code(shell: Shell, name: str, source: str, timeout_ms: int | None) -> None:
    """Run ``source`` in the shell; raise what it raised, ``KeyboardInterrupt`` when it was
    interrupted, :class:`StateTimeout` when it ran out of time."""
    text = state_cell_source(name, source)
    try:
        transformed: str | None = shell.transform_cell(text)
        preprocessing: Any = None
    except Exception:
        transformed, preprocessing = None, sys.exc_info()
    timer = _Timer(timeout_ms)
    with _interruptible(timer):
        result = await shell.run_cell_async(
            text,
            store_history=False,
            transformed_cell=transformed,
            preprocessing_exc_tuple=preprocessing,
        )
    if result.error_before_exec is not None:
        raise StateSyntaxError(
            "state_syntax_error",
            f"state {name!r} cannot be compiled: {result.error_before_exec}",
            name=name,
            hint="fix the code of the cell and run it again",
        )
    error = result.error_in_exec
    if error is None:
        return
    if timer.fired and isinstance(error, (KeyboardInterrupt, asyncio.CancelledError)):
        raise StateTimeout(f"state {name!r} exceeded its time limit of {timeout_ms} ms")
    if isinstance(error, StateTimeout):
        raise error
    if isinstance(error, asyncio.CancelledError):
        raise KeyboardInterrupt from error
    raise error


class _Timer:
    """SIGALRM after ``timeout_ms``; remembers whether it fired."""

    def __init__(self, timeout_ms: int | None) -> None:
        self.timeout_ms = timeout_ms
        self.fired = False


@contextmanager
def _interruptible(timer: _Timer) -> Iterator[None]:
    def deliver(signum: int, frame: FrameType | None, previous: Any, error: type) -> None:
        if signum == signal.SIGALRM:
            timer.fired = True
        if asyncio.current_task() is not None:
            raise error  # blocking code of the state is running: stop it
        task = _state_task
        if task is not None:
            task.cancel()  # the loop is idle: cancel the awaiting state code
        elif callable(previous):
            previous(signum, frame)

    global _state_task
    if threading.current_thread() is not threading.main_thread():
        # A worker thread (a Dask worker's): signals cannot be caught here, and the
        # driving process enforces time limits and interrupts itself.
        yield
        return
    previous_int = signal.getsignal(signal.SIGINT)
    previous_alrm = signal.getsignal(signal.SIGALRM)
    _state_task = asyncio.current_task()
    signal.signal(signal.SIGINT, lambda s, f: deliver(s, f, previous_int, KeyboardInterrupt))
    signal.signal(signal.SIGALRM, lambda s, f: deliver(s, f, previous_alrm, StateTimeout))
    if timer.timeout_ms:
        signal.setitimer(signal.ITIMER_REAL, timer.timeout_ms / 1000)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous_alrm)
        signal.signal(signal.SIGINT, previous_int)
        _state_task = None


_state_task: asyncio.Task[Any] | None = None
