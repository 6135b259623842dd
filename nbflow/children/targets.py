"""What a child run runs, and how it is started: a notebook in a process of its own (as
``nbflow run`` runs it), or a :class:`~nbflow.Flow` in a forked worker process.

Why a process for ``Flow`` children too, and not a thread: a child must outlive its
parent's death the way a notebook child does (killed parent, orphaned child that finishes,
found finished on resume), and two children of one state should use two cores. A forked
worker inherits the flow's bodies (closures and lambdas included) without pickling them;
it opens its own connection to the history and leaves through ``os._exit``, never
returning into its parent's code.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from nbflow.errors import NbflowError
from nbflow.model.events import ChildOf
from nbflow.store import HOME_DIRNAME

if TYPE_CHECKING:
    from nbflow.flow import Flow


class Process(Protocol):
    """A started child process."""

    @property
    def pid(self) -> int:
        """Its process id."""
        ...

    def exited(self) -> bool:
        """Whether it has ended (reaped)."""
        ...


class Target(Protocol):
    """Something a child run runs."""

    name: str
    """``notebook:PATH`` or ``flow:NAME``: part of the child's default key."""
    home: Path
    """The history the child's run is recorded in."""

    def launch(
        self, run_id: str, parameters: dict[str, Any], parent: ChildOf, resume: bool
    ) -> Process:
        """Start run ``run_id`` (``resume``: continue it) in a process of its own."""
        ...

    def codec_restore(self, snapshot_id: str, names: list[str] | None) -> dict[str, Any]:
        """The variables of the child's snapshot ``snapshot_id`` (only ``names``)."""
        ...


@dataclass
class _Popen:
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def exited(self) -> bool:
        return self.process.poll() is not None


@dataclass
class _Forked:
    pid: int
    _done: bool = False

    def exited(self) -> bool:
        if not self._done:
            try:
                done, _ = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                done = self.pid
            self._done = done == self.pid
        return self._done


class NotebookTarget:
    """A notebook, run as ``nbflow run`` runs it: its own kernel, in its folder, with its
    history in that folder's ``.nbflow``; executed to ``NAME.RUN.output.ipynb`` beside it."""

    def __init__(self, path: Path, parent_folder: Path) -> None:
        resolved = (parent_folder / path).resolve()
        if not resolved.is_file():
            raise NbflowError(
                "child_target_not_found",
                f"there is no notebook at {resolved}",
                name=str(path),
                hint="give the child notebook's path, relative to this notebook's folder",
            )
        self.path = resolved
        try:
            shown = resolved.relative_to(parent_folder.resolve()).as_posix()
        except ValueError:
            shown = str(resolved)
        self.name = f"notebook:{shown}"
        self.home = resolved.parent / HOME_DIRNAME

    def output_path(self, run_id: str) -> Path:
        """Where the executed child notebook is written."""
        return self.path.with_name(f"{self.path.stem}.{run_id[:8]}.output.ipynb")

    def launch(
        self, run_id: str, parameters: dict[str, Any], parent: ChildOf, resume: bool
    ) -> Process:
        child = {"run_id": run_id, "parameters": parameters, "parent": parent.model_dump()}
        command = [
            sys.executable,
            "-m",
            "nbflow.cli",
            "run",
            str(self.path),
            "--output",
            str(self.output_path(run_id)),
            "--child",
            json.dumps(child),
        ]
        # A session of its own: the parent's interrupt (the kernel's stop button) does not
        # reach it, and a parent that dies leaves it running; the parent's resume finds it.
        process = subprocess.Popen(
            command,
            cwd=self.path.parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return _Popen(process)

    def codec_restore(self, snapshot_id: str, names: list[str] | None) -> dict[str, Any]:
        from nbflow.snapshot import NamespaceCodec
        from nbflow.store import Home

        with Home(self.home) as home:
            return NamespaceCodec(home.artifacts).restore(snapshot_id, names=names)


class FlowTarget:
    """A :class:`~nbflow.Flow`, run in a forked worker process in its own home."""

    def __init__(self, flow: Flow) -> None:
        if not hasattr(os, "fork"):
            raise NbflowError(
                "child_flow_unsupported",
                "Flow children run in forked processes, and this platform cannot fork",
                name=flow.name,
                hint="run the child as a notebook, or call flow.run() inside the state",
            )
        self.flow: Flow | None = flow
        self.name = f"flow:{flow.name}"
        self.home = flow.home.root

    def __getstate__(self) -> dict[str, Any]:
        # Saved with the variables without the flow (its bodies are code of this process);
        # unpickled, its snapshots are read as JSON documents, the default codec's.
        return {**self.__dict__, "flow": None}

    def launch(
        self, run_id: str, parameters: dict[str, Any], parent: ChildOf, resume: bool
    ) -> Process:
        flow = self.flow
        if flow is None:
            raise NbflowError(
                "child_flow_unavailable",
                f"child run {run_id[:8]} of {self.name} was restored without its flow",
                name=run_id,
                hint="start it again with nbflow.child(flow, ...) in the state",
            )
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker: never returns
            code = 1
            try:
                _plain_output()
                code = flow.run_as_child(run_id, parameters, parent, resume)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        return _Forked(pid)

    def codec_restore(self, snapshot_id: str, names: list[str] | None) -> dict[str, Any]:
        if self.flow is not None:
            context = self.flow.engine.codec.restore(snapshot_id)
        else:
            from nbflow.engine.context import JsonContextCodec
            from nbflow.store import Home

            with Home(self.home) as home:
                context = JsonContextCodec(home.artifacts).restore(snapshot_id)
        if not isinstance(context, dict):
            return {"context": context}
        return {k: v for k, v in context.items() if names is None or k in names}


def _plain_output() -> None:
    """In a forked worker: write output to the inherited descriptors directly (a kernel's
    output streams rely on threads that a fork does not carry over)."""
    for fd, name in ((1, "stdout"), (2, "stderr")):
        try:
            stream = io.TextIOWrapper(os.fdopen(fd, "wb", closefd=False), line_buffering=True)
        except OSError:
            continue
        setattr(sys, name, stream)
