"""The two kinds of branch task: a notebook state's code run by IPython, and a ``Flow``
state's Python function on a JSON context."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from nbflow.engine.attempt import error_from_exception
from nbflow.model.plan import StateSpec
from nbflow.parallel.outputs import OutputRecorder
from nbflow.parallel.tasks import BranchOutcome
from nbflow.parallel.worker import WorkerState


@dataclass(frozen=True)
class CodeBranch:
    """A ``%%state`` cell's code, run in the worker's IPython shell on the variables of
    its base snapshot; what it prints and displays is recorded for the kernel."""

    key: str
    home: str
    spec: StateSpec
    base_snapshot_id: str
    folder: str
    """The notebook's folder: the worker runs the code there, as the kernel would."""

    def run(self, worker: WorkerState) -> BranchOutcome:
        shell = worker.shell()
        clock = time.perf_counter()
        try:
            return self._run(shell, worker.namespace_codec(self.home), clock)
        finally:
            _clear(shell)  # an idle worker holds none of the state's data

    def _run(self, shell: Any, codec: Any, clock: float) -> BranchOutcome:
        from nbflow.kernel.execution import run_state_code

        namespace = shell.user_ns
        _clear(shell)
        codec.restore(self.base_snapshot_id, into=namespace)
        restored = time.perf_counter()
        recorder = OutputRecorder()
        error = None
        with _working_directory(self.folder), recorder.recording(shell):
            try:
                # No time limit here: the driving process enforces --timeout and stops
                # the worker, so the same rule holds for every executor.
                asyncio.run(run_state_code(shell, self.spec.id, self.spec.source, None))
            except Exception as exc:
                error = error_from_exception(self.spec, exc)
        ran = time.perf_counter()
        if error is not None:
            return BranchOutcome(None, error=error, outputs=tuple(recorder.records))
        snapshot_id = codec.capture(namespace)
        report = codec.last_report
        notes = tuple(str(note) for note in report.new_notes) if report is not None else ()
        changed, removed = codec.changes(self.base_snapshot_id, snapshot_id)
        done = time.perf_counter()
        return BranchOutcome(
            snapshot_id,
            changed,
            removed,
            outputs=tuple(recorder.records),
            notes=notes,
            seconds={"restore": restored - clock, "run": ran - restored, "capture": done - ran},
        )


@dataclass(frozen=True)
class CallableBranch:
    """A ``Flow`` state's function (pickled by value with cloudpickle) on the JSON
    context of its base snapshot."""

    key: str
    home: str
    spec: StateSpec
    base_snapshot_id: str
    body: bytes

    def run(self, worker: WorkerState) -> BranchOutcome:
        import cloudpickle

        from nbflow.engine.context import JsonContextCodec

        codec = JsonContextCodec(worker.home(self.home).artifacts, worker.secrets)
        clock = time.perf_counter()
        context = codec.restore(self.base_snapshot_id)
        restored = time.perf_counter()
        body = cloudpickle.loads(self.body)
        try:
            result: Any = body(context)
        except Exception as exc:
            return BranchOutcome(None, error=error_from_exception(self.spec, exc))
        ran = time.perf_counter()
        snapshot_id = codec.capture(result)
        changed, removed = codec.changes(self.base_snapshot_id, snapshot_id)
        return BranchOutcome(
            snapshot_id,
            changed,
            removed,
            seconds={
                "restore": restored - clock,
                "run": ran - restored,
                "capture": time.perf_counter() - ran,
            },
        )


def _clear(shell: Any) -> None:
    """Remove the user's variables from ``shell``'s namespace (IPython's own stay)."""
    from nbflow.kernel.ipython_names import ipython_owned

    owned = ipython_owned(shell)
    namespace = shell.user_ns
    for name in [n for n, value in namespace.items() if not owned(n, value)]:
        del namespace[name]


class _working_directory:  # noqa: N801 - used as a context manager, like contextlib's
    def __init__(self, folder: str) -> None:
        self._folder = folder
        self._previous = ""

    def __enter__(self) -> None:
        import os

        self._previous = os.getcwd()
        if self._folder:
            os.chdir(self._folder)

    def __exit__(self, *_: object) -> None:
        import os

        os.chdir(self._previous)
