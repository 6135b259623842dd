"""The default executor: a pool of worker processes on this machine.

Workers are forked from a fork server that has imported nbflow, IPython and the snapshot
machinery once, so a new worker is ready in milliseconds, not the second a fresh
interpreter takes; the kernel itself is never forked (its threads and sockets would be
copied into the child). The pool is started once per process and reused by later runs.

Each worker runs one task at a time over a pipe of its own, so a worker that dies (killed,
out of memory) loses only its own task, reported as lost; the pool replaces it.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from nbflow.parallel.tasks import BranchTask, Finished
from nbflow.parallel.worker import _PING, serve

PRELOAD = [
    "nbflow.parallel.worker",
    "nbflow.snapshot.codec",
    "nbflow.kernel.execution",
    "IPython.core.interactiveshell",
]
"""Imported once by the fork server; every worker starts with them loaded."""


@dataclass
class _Slot:
    index: int
    process: BaseProcess
    connection: Connection
    key: str | None = None
    started: float = 0.0

    @property
    def label(self) -> str:
        return f"worker {self.index} (pid {self.process.pid})"


def _context() -> Any:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


class LocalPool:
    """``size`` worker processes; :meth:`submit` and :meth:`poll` as in :class:`Executor`."""

    name = "local"

    def __init__(self, size: int) -> None:
        self.size = size
        self._context = _context()
        self._slots: list[_Slot] = []
        self._queue: list[tuple[str, BranchTask]] = []
        self._lost: list[Finished] = []
        self._next_index = 1
        atexit.register(self.close)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Start every worker now and wait until each answers (the pool is warm)."""
        while len(self._slots) < self.size:
            self._spawn()
        for slot in self._slots:
            if slot.key is None:
                slot.connection.send(_PING)
        for slot in self._slots:
            if slot.key is None:
                slot.connection.recv()

    def resize(self, size: int) -> None:
        """Allow ``size`` workers at once (idle ones beyond it are stopped)."""
        self.size = size
        for slot in [s for s in self._slots if s.key is None][: max(0, len(self._slots) - size)]:
            self._stop(slot)

    def _spawn(self) -> _Slot:
        parent, child = self._context.Pipe()
        index = self._free_index()
        process = self._context.Process(
            target=serve, args=(child, f"worker {index}"), name=f"nbflow-worker-{index}"
        )
        with _main_not_reimported():
            process.start()
        child.close()
        slot = _Slot(index, process, parent)
        self._slots.append(slot)
        return slot

    def _free_index(self) -> int:
        used = {slot.index for slot in self._slots}
        index = 1
        while index in used:
            index += 1
        return index

    def _stop(self, slot: _Slot, kill: bool = False) -> None:
        self._slots.remove(slot)
        slot.connection.close()
        if kill and slot.process.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(slot.process.pid, signal.SIGKILL)
        slot.process.join(timeout=5)

    def close(self) -> None:
        """Stop every worker."""
        for slot in list(self._slots):
            self._stop(slot, kill=slot.key is not None)
        self._queue.clear()

    def pids(self) -> list[int]:
        """The workers' process ids."""
        return [s.process.pid for s in self._slots if s.process.pid is not None]

    # -- tasks ----------------------------------------------------------------------------

    def submit(self, key: str, task: BranchTask) -> None:
        """Run ``task`` on an idle worker (queued while none is)."""
        self._queue.append((key, task))
        self._dispatch()

    def _dispatch(self) -> None:
        while self._queue:
            slot = next((s for s in self._slots if s.key is None), None)
            if slot is None:
                if len(self._slots) >= self.size:
                    return
                slot = self._spawn()
            key, task = self._queue.pop(0)
            try:
                slot.connection.send(task)
            except (BrokenPipeError, OSError):
                self._stop(slot, kill=True)
                self._queue.insert(0, (key, task))
                continue
            slot.key, slot.started = key, time.monotonic()

    def worker_of(self, key: str) -> str | None:
        """The label of the worker running ``key``, once it runs."""
        return next((s.label for s in self._slots if s.key == key), None)

    def poll(self, timeout: float) -> list[Finished]:
        """Tasks that ended within ``timeout`` seconds (maybe none)."""
        if self._lost:
            lost, self._lost = self._lost, []
            return lost
        busy = [s for s in self._slots if s.key is not None]
        if not busy:
            time.sleep(timeout)
            return []
        waitables: list[Any] = [s.connection for s in busy] + [s.process.sentinel for s in busy]
        ready = set(wait(waitables, timeout))
        finished: list[Finished] = []
        for slot in busy:
            assert slot.key is not None
            key, label = slot.key, slot.label
            if slot.connection in ready:
                try:
                    outcome = slot.connection.recv()
                except (EOFError, OSError):
                    outcome = None
                if outcome is not None:
                    slot.key = None
                    finished.append(Finished(key, outcome, worker=label))
                    continue
            if slot.connection in ready or slot.process.sentinel in ready:
                slot.process.join(timeout=1)
                code = slot.process.exitcode
                why = _death(code)
                self._stop(slot, kill=True)
                finished.append(Finished(key, None, lost=f"{label} {why}", worker=label))
        self._dispatch()
        return finished

    def cancel(self, key: str) -> None:
        """Stop ``key``: dropped if queued, its worker killed if it runs."""
        self._queue = [(k, t) for k, t in self._queue if k != key]
        for slot in list(self._slots):
            if slot.key == key:
                self._stop(slot, kill=True)
        self._dispatch()


@contextlib.contextmanager
def _main_not_reimported() -> Iterator[None]:
    """Start a worker without running the parent's ``__main__`` in it again.

    multiprocessing re-imports the main module in a forked-from-server child so that
    functions defined there unpickle; nbflow sends states' code and functions by value,
    and the main module is a kernel launcher or a user's script that must not run twice.
    """
    main = sys.modules["__main__"]
    saved = {
        name: main.__dict__[name] for name in ("__file__", "__spec__") if name in main.__dict__
    }
    main.__dict__.pop("__file__", None)
    main.__dict__["__spec__"] = None
    try:
        yield
    finally:
        main.__dict__.pop("__spec__", None)
        for name, value in saved.items():
            setattr(main, name, value)


def _death(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"
