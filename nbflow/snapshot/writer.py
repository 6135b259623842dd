"""Writing a capture's slices and buffers on worker threads, each artifact once.

A slice and its buffers are queued by :meth:`SliceWriter.store` once the slice is final
(pickled and past the secret scan). Big buffers of a variable may also be started earlier,
by :meth:`SliceWriter.start_early`, behind a :class:`Gate`: their bytes go to a temp file
and are hashed while pickling goes on, but the file is named (made an artifact) only once
a stored slice refers to that buffer, and deleted otherwise. So the disk is busy from the
start of a capture, and still no buffer of a withheld variable is ever stored.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

from nbflow.errors import StorageError
from nbflow.snapshot.buffers import BufferJob
from nbflow.store.artifacts import INLINE_MAX, ArtifactStore, human_size


@dataclass
class Slice:
    """One variable's final piece of the pickle stream, with its out-of-band buffers."""

    name: str
    type_name: str
    data: bytes
    digest: str
    jobs: list[BufferJob]


class Gate:
    """Whether a buffer written early may become an artifact: opened when a stored slice
    refers to it, shut when the stream ended without one."""

    def __init__(self) -> None:
        self._decided = threading.Event()
        self._open = False
        self._lock = threading.Lock()

    def open(self) -> None:
        """Let it through (unless shut already)."""
        with self._lock:
            if not self._decided.is_set():
                self._open = True
                self._decided.set()

    def shut(self) -> None:
        """Keep it out (unless opened already)."""
        with self._lock:
            self._decided.set()

    def passes(self) -> bool:
        """Wait for the decision; True when opened."""
        self._decided.wait()
        return self._open


class SliceWriter:
    """Writes slices and buffers on worker threads, each artifact once."""

    def __init__(self, artifacts: ArtifactStore, workers: int) -> None:
        self._artifacts = artifacts
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="nbflow-write")
        self._claimed: set[str] = set()
        self._lock = threading.Lock()
        self._futures: list[Future[None]] = []
        self._small: list[tuple[str, int, str, memoryview]] = []
        """Slices kept in the database, checked for presence all at once by :meth:`finish`."""
        self._ahead: set[int] = set()
        """Buffers (by their job) being written ahead of their hash."""
        self._gates: dict[int, Gate] = {}
        """Buffers (by their job) started before any slice referring to them was final."""
        self.bytes_written = 0
        self.artifacts_written = 0

    @staticmethod
    def writes_ahead(job: BufferJob) -> bool:
        """Whether a buffer is written while it is hashed: almost surely new, and too big
        for the database."""
        return job.fresh and job.nbytes > INLINE_MAX

    def start_early(self, job: BufferJob, name: str, size: int) -> None:
        """Start writing a buffer of variable ``name`` before its slice is final; it is
        stored only if :meth:`store` later gets a slice that refers to it."""
        if not self.writes_ahead(job):
            return
        gate = Gate()
        with self._lock:
            if id(job) in self._ahead:
                return
            self._ahead.add(id(job))
            self._gates[id(job)] = gate
        self._futures.append(self._pool.submit(self._write_gated, job, name, size, gate))

    def store(self, piece: Slice) -> None:
        """Queue the writes of a final slice and its buffers."""
        size = len(piece.data) + sum(job.nbytes for job in piece.jobs)
        for job in piece.jobs:
            gate = self._gates.get(id(job))
            if gate is not None:
                gate.open()
            else:
                self._futures.append(self._pool.submit(self._store_buffer, job, piece.name, size))
        if len(piece.data) <= INLINE_MAX:  # kept in the database: no thread needed
            self._small.append((piece.name, size, piece.digest, memoryview(piece.data)))
        else:
            self._futures.append(
                self._pool.submit(
                    self._put_of, piece.name, size, piece.digest, memoryview(piece.data)
                )
            )

    def _shut_gates(self) -> None:
        """The stream has ended: buffers started early that no stored slice refers to are
        dropped. Before :meth:`finish` or :meth:`close` wait for their writes."""
        for gate in self._gates.values():
            gate.shut()

    def _store_buffer(self, job: BufferJob, name: str, size: int) -> None:
        if not self.writes_ahead(job):
            self._put_of(name, size, job.artifact_id(), job.view)
            return
        with self._lock:
            if id(job) in self._ahead:  # a buffer two variables share: written once
                return
            self._ahead.add(id(job))
        with _about(name, size):
            self._write_ahead(job, None)

    def _write_gated(self, job: BufferJob, name: str, size: int, gate: Gate) -> None:
        try:
            with _about(name, size):
                self._write_ahead(job, gate)
        except StorageError:
            if gate.passes():
                raise  # a stored variable needs it: the capture fails, naming it
            # else nothing refers to it: its failure fails nothing

    def _write_ahead(self, job: BufferJob, gate: Gate | None) -> None:
        """Write a buffer that is almost surely new while its hash is computed, then name
        it (or drop it, if it turns out to be stored or claimed already, or its gate
        stays shut)."""
        written = self._artifacts.write_ahead([job.view], job.nbytes)
        try:
            artifact_id = job.artifact_id()
        except BaseException:
            written.discard()
            raise
        if gate is not None and not gate.passes():
            written.discard()
            return
        with self._lock:
            claimed = artifact_id in self._claimed
            self._claimed.add(artifact_id)
        if claimed:
            written.discard()
        elif self._artifacts.settle(written, artifact_id):
            with self._lock:
                self.bytes_written += job.nbytes
                self.artifacts_written += 1

    def _put_of(self, name: str, size: int, artifact_id: str, view: memoryview) -> None:
        """:meth:`put` a piece of variable ``name``; a failure names the variable."""
        with _about(name, size):
            self.put(artifact_id, view)

    def put(self, artifact_id: str, view: memoryview) -> None:
        """Store ``view`` as ``artifact_id`` unless it is stored already."""
        with self._lock:
            if artifact_id in self._claimed:
                return
            self._claimed.add(artifact_id)
        if self._artifacts.put_known(artifact_id, [view]):
            with self._lock:
                self.bytes_written += view.nbytes
                self.artifacts_written += 1

    def finish(self) -> None:
        """Store the small slices that are not stored yet, and wait for every queued
        write; raises the first failure."""
        self._shut_gates()
        small, self._small = self._small, []
        # One query for every small slice: most are unchanged variables, stored before.
        missing = self._artifacts.missing(digest for _, _, digest, _ in small)
        for name, size, digest, view in small:
            if digest in missing:
                self._put_of(name, size, digest, view)
        for future in self._futures:
            future.result()
        self._futures.clear()

    def close(self) -> None:
        """Stop the threads (after a failure, without waiting for queued writes)."""
        self._shut_gates()
        self._pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _about(name: str, size: int) -> Iterator[None]:
    """A storage failure while saving variable ``name`` names it."""
    try:
        yield
    except StorageError as exc:
        raise StorageError(
            exc.code,
            f"could not save the variable {name!r} ({human_size(size)}): "
            + exc.message.split(": ", 1)[-1],
            name=name,
            hint=exc.hint,
            details={**exc.details, "variable": name, "bytes": size},
        ) from exc
