"""The worker side: state kept across tasks in one worker process, and its loops.

A worker opens each home once and keeps its IPython shell, so a task pays for neither
imports nor connections. It never appends an event: it writes artifacts (content
addressed, so a task run twice writes the same bytes) and returns their ids.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from nbflow.engine.facts import IN_BRANCH
from nbflow.errors import NbflowError
from nbflow.hashing.redact import KnownSecrets
from nbflow.model.errors import ErrorCategory, ErrorInfo
from nbflow.parallel.tasks import BranchOutcome, BranchTask
from nbflow.store.home import Home

CLAIMS_DIR = "claims"
"""In the home: one file per attempt a worker started (Dask runs a task
again when its worker died; the second start finds the claim and refuses)."""

_PING = "ping"


class BranchLost(Exception):  # noqa: N818 - names what happened to the attempt
    """The attempt was started before, by a worker that is gone: it is orphaned, and the
    driving process retries it as a new attempt instead."""


class WorkerState:
    """What one worker process keeps between tasks."""

    def __init__(self, label: str) -> None:
        self.label = label
        self._homes: dict[str, Home] = {}
        self._codecs: dict[str, Any] = {}
        self._shell: Any = None
        self.secrets = KnownSecrets()
        self.lock = threading.Lock()
        """Tasks run one at a time per process: they share one shell and its streams."""

    def home(self, path: str) -> Home:
        """The home at ``path``, opened once."""
        if path not in self._homes:
            self._homes[path] = Home(Path(path))
        return self._homes[path]

    def namespace_codec(self, path: str) -> Any:
        """A :class:`NamespaceCodec` over ``path``'s artifacts, kept (its capture memory
        makes the next capture incremental)."""
        if path not in self._codecs:
            from nbflow.kernel.ipython_names import ipython_owned
            from nbflow.snapshot.codec import NamespaceCodec

            codec = NamespaceCodec(self.home(path).artifacts, secrets=self.secrets)
            codec.owned = ipython_owned(self.shell())
            self._codecs[path] = codec
        return self._codecs[path]

    def shell(self) -> Any:
        """This process's IPython shell (plain, no kernel)."""
        if self._shell is None:
            from IPython.core.interactiveshell import InteractiveShell

            # No output cache: a branch's last value must not stay referenced by Out.
            self._shell = InteractiveShell.instance(colors="NoColor", cache_size=0)
        return self._shell

    def run(self, task: BranchTask) -> BranchOutcome:
        """Run ``task``; an error outside the state's own code is a ``worker_error``."""
        with self.lock:
            token = IN_BRANCH.set(task.spec.id)
            try:
                outcome = task.run(self)
            except NbflowError as exc:
                return BranchOutcome(None, error=exc.info(), worker=self.label)
            except Exception as exc:
                return BranchOutcome(None, error=worker_error(exc), worker=self.label)
            finally:
                IN_BRANCH.reset(token)
        return BranchOutcome(
            outcome.snapshot_id,
            outcome.changed,
            outcome.removed,
            outcome.error,
            outcome.outputs,
            self.label,
            outcome.notes,
            outcome.seconds,
        )


def worker_error(exc: BaseException) -> ErrorInfo:
    """An error of the worker itself, not of the state's code (retryable)."""
    text = "".join(traceback.format_exception(exc))[-4000:]
    return ErrorInfo(
        code="worker_error",
        category=ErrorCategory.STORAGE,
        retryable=True,
        message=f"the worker could not run the state: {type(exc).__name__}: {exc}",
        details={"traceback": text},
    )


def serve(connection: Connection, label: str) -> None:
    """A local pool worker: run the tasks that come over ``connection`` until it closes."""
    # The kernel's stop button signals its whole process group: the driving process
    # stops the branches itself (and records that), so a worker ignores it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    state = WorkerState(f"{label} (pid {os.getpid()})")
    while True:
        try:
            task = connection.recv()
        except (EOFError, OSError):
            return
        if task == _PING:
            connection.send(_PING)
            continue
        outcome = state.run(task)
        try:
            connection.send(outcome)
        except (BrokenPipeError, OSError):
            return


_DASK_STATE: WorkerState | None = None


def run_claimed(task: BranchTask) -> BranchOutcome:
    """Run ``task`` on a Dask worker, once: a second start of the same attempt (its first
    worker died) raises :class:`BranchLost`."""
    global _DASK_STATE
    if _DASK_STATE is None:
        from distributed import get_worker

        _DASK_STATE = WorkerState(get_worker().address)
    claims = Path(task.home) / CLAIMS_DIR
    claims.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(claims / task.key, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        raise BranchLost(f"attempt {task.key} was started by a worker that is gone") from None
    os.close(fd)
    return _DASK_STATE.run(task)


def release_claim(home: str, key: str) -> None:
    """Forget the claim of attempt ``key`` (its outcome was received)."""
    with contextlib.suppress(FileNotFoundError):
        (Path(home) / CLAIMS_DIR / key).unlink()
