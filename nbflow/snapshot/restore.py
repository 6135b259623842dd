"""Restore: verified slices, memory-mapped buffers, one unpickler over the whole stream.

Lazy, copy-on-write buffers. Every buffer artifact is mapped with ``mmap.ACCESS_COPY``
(``MAP_PRIVATE``, readable and writable) and handed to the unpickler, so NumPy arrays and
pandas blocks come back *backed by the artifact file*: nothing is read into private memory
up front, the page cache serves the pages, and memory is only used for pages the program
writes. A read-only mapping (``PROT_READ``) was rejected: restored arrays would raise
``ValueError: assignment destination is read-only`` on the first in-place update, which
notebook code does all the time (``df.loc[...] = ...``, ``arr *= 2``). With private pages
the update works and never reaches the artifact, which stays immutable. Caveats: pages
that are written count as the process's memory like any copy would; an array that was
read-only when captured is read-only again (pickle records that).

Verification. The in-band slices (the only bytes that drive the unpickler) are read whole
and checked against their blake3 ids before the first ``load``. A buffer is checked *on its
mapping* on worker threads, and the unpickler is handed a buffer only after it matched, so
damaged bytes never reach an object. A buffer is only ever mapped and wrapped, never
unpickled, so it is checked against the checksum that the signed snapshot document records
for it (xxh3_128, several times blake3's speed, one GIL-free call per buffer, so that the
checks run on the other cores while the unpickler works); a buffer without
one (a version 1 document) and every buffer under ``NBFLOW_VERIFY=full`` is checked against
its blake3 id. ``nbflow verify`` and ``nbflow trust`` always check blake3. Checking a
mapping reads its pages once (into the page cache, not into private memory).
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import mmap
import os
import pickle
import threading
import time
from collections import deque
from collections.abc import Collection
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from nbflow.errors import ArtifactCorruptError, ContextError, NbflowError, StorageError
from nbflow.hashing.checksums import checksum_of
from nbflow.hashing.ids import content_id
from nbflow.snapshot.capture import gc_paused
from nbflow.snapshot.document import (
    Encoding,
    SnapshotDocument,
    VariableEntry,
    VariableStatus,
    python_version,
)
from nbflow.snapshot.pickling import restore_target
from nbflow.snapshot.report import RestoreReport, VariableNote
from nbflow.store.artifacts import ArtifactStore

Buffer = mmap.mmap | bytearray
VERIFY_ENV = "NBFLOW_VERIFY"
"""``full``: check every buffer against its blake3 id at every restore."""


def full_verification() -> bool:
    """Whether buffers are checked with blake3 rather than their recorded checksums.

    Only an unset or empty ``NBFLOW_VERIFY`` or ``checksum`` selects checksums; ``full`` and
    any value not understood select blake3 (when in doubt, check more)."""
    return os.environ.get(VERIFY_ENV, "").strip().lower() not in ("", "checksum")


class Restore:
    """One restore of one snapshot; use :meth:`run` once."""

    def __init__(self, artifacts: ArtifactStore, workers: int, *, full: bool | None = None) -> None:
        self._artifacts = artifacts
        self._workers = workers
        self._full = full_verification() if full is None else full
        self._lock = threading.Lock()
        self._checksummed = 0
        self._hashed = 0

    def run(
        self,
        snapshot_id: str,
        document: SnapshotDocument,
        into: dict[str, Any],
        names: Collection[str] | None = None,
    ) -> RestoreReport:
        """Load every stored variable of ``document`` (or only ``names``) into ``into``,
        all or nothing."""
        started = time.perf_counter()
        entries = [v for v in document.variables if v.status == VariableStatus.STORED]
        pickled = [v for v in entries if v.encoding == Encoding.PICKLE]
        if names is not None:
            wanted = set(names)
            # Slices refer to objects of the slices before them: load up to the last one
            # wanted, and keep only the wanted.
            last = max((i for i, v in enumerate(pickled) if v.name in wanted), default=-1)
            pickled = pickled[: last + 1]
            entries = [v for v in entries if v.name in wanted or v in pickled]
        loaded: dict[str, Any] = {}
        for entry in entries:
            if entry.encoding == Encoding.MODULE:
                loaded[entry.name] = _import(entry)
        with ThreadPoolExecutor(
            self._workers, thread_name_prefix="nbflow-verify", initializer=_yield_to_unpickler
        ) as pool:
            # The slices first, then the buffers, each in the order the unpickler needs
            # them: the unpickler starts on the first slice while the others and the
            # buffers are checked, and waits for each one only when it needs it. Each use
            # of a buffer gets a mapping of its own, even of the same artifact: two equal
            # arrays must not share private pages.
            small = self._artifacts.raw_small([entry.pickle for entry in pickled if entry.pickle])

            def slice_of(entry: VariableEntry) -> bytes | Future[bytes]:
                data = small.get(entry.pickle or "")
                if data is None:
                    return pool.submit(self._slice, entry)
                return self._checked(entry, data)

            first = slice_of(pickled[0]) if pickled else b""
            stream = _SliceStream(
                [slice_of(entry) for entry in pickled[1:]],
                first if isinstance(first, bytes) else first.result(),
            )
            buffers = [
                [
                    pool.submit(self._map_verified, artifact_id, entry.checksum_of(i), entry.name)
                    for i, artifact_id in enumerate(entry.buffers)
                ]
                for entry in pickled
            ]
            try:
                self._unpickle(document, pickled, stream, buffers, loaded, into)
            except BaseException:
                for waiting in stream.pending:
                    if isinstance(waiting, Future):
                        waiting.cancel()
                for future in itertools.chain.from_iterable(buffers):
                    future.cancel()
                raise
        if names is not None:
            loaded = {name: value for name, value in loaded.items() if name in wanted}
        into.update(loaded)
        mapped = sum(len(f.result()) for f in itertools.chain.from_iterable(buffers))
        return RestoreReport(
            snapshot_id=snapshot_id,
            restored=tuple(sorted(v.name for v in entries if names is None or v.name in wanted)),
            missing=tuple(
                VariableNote(v.name, v.status, v.reason or "")
                for v in document.variables
                if v.status != VariableStatus.STORED
            ),
            mapped_bytes=mapped,
            seconds=time.perf_counter() - started,
            bytes_checksummed=self._checksummed,
            bytes_hashed=self._hashed,
        )

    def _slice(self, entry: VariableEntry) -> bytes:
        """The verified bytes of ``entry``'s slice of the pickle stream."""
        assert entry.pickle is not None, "stored pickled entries name their slice"
        try:
            return self._artifacts.get(entry.pickle)
        except NbflowError as exc:
            raise _about_variable(exc, entry.name) from exc

    @staticmethod
    def _checked(entry: VariableEntry, data: bytes) -> bytes:
        """``data``, read as ``entry``'s slice, once its hash matched."""
        if content_id(data) != entry.pickle:
            raise _about_variable(ArtifactStore.corrupt(entry.pickle or ""), entry.name)
        return data

    def _unpickle(
        self,
        document: SnapshotDocument,
        pickled: list[VariableEntry],
        stream: _SliceStream,
        buffers: list[list[Future[Buffer]]],
        loaded: dict[str, Any],
        into: dict[str, Any],
    ) -> None:
        feed = _BufferFeed()
        unpickler = pickle.Unpickler(stream, buffers=feed)
        with restore_target(into), gc_paused():
            for index, (entry, entry_buffers) in enumerate(zip(pickled, buffers, strict=True)):
                feed.start(entry_buffers)
                if index:
                    stream.next_slice()
                try:
                    loaded[entry.name] = unpickler.load()
                except NbflowError:
                    raise
                except Exception as exc:
                    raise _unloadable(document, entry, exc) from exc

    def _map_verified(self, artifact_id: str, checksum: str | None, name: str) -> Buffer:
        """The artifact as a private copy-on-write mapping, after its checksum (or, with
        none or under full verification, its blake3 hash) matched."""
        if not self._artifacts.is_file(artifact_id):
            try:  # small artifacts live in the database; a writable copy, as for a mapping
                return bytearray(self._artifacts.get(artifact_id))
            except NbflowError as exc:
                raise _about_variable(exc, name) from exc
        try:
            fd = os.open(self._artifacts.path_of(artifact_id), os.O_RDONLY)
        except FileNotFoundError:
            raise StorageError(
                "artifact_not_found",
                f"artifact {artifact_id} of variable {name!r} is not in the store",
                name=artifact_id,
                hint="it may have been garbage-collected; restore another snapshot",
                details={"variable": name},
            ) from None
        by_hash = checksum is None or self._full
        try:
            if os.fstat(fd).st_size == 0:
                mapped: Buffer = bytearray()
                ok = content_id(b"") == artifact_id
            else:
                mapped = mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)
                with memoryview(mapped) as view:
                    ok = (
                        content_id(view) == artifact_id
                        if by_hash
                        else checksum_of(view) == checksum
                    )
                with self._lock:
                    if by_hash:
                        self._hashed += len(mapped)
                    else:
                        self._checksummed += len(mapped)
        finally:
            os.close(fd)
        if not ok:
            if isinstance(mapped, mmap.mmap):
                mapped.close()
            raise _corrupt(artifact_id, name, "hash" if by_hash else "checksum")
        return mapped


def _yield_to_unpickler() -> None:
    """Lower this checking thread's priority, so that the unpickler, which every restore
    waits for, keeps a core to itself while the checks share the others."""
    # Not Linux, or not allowed: the checks still run, at the usual priority.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), _CHECK_NICENESS)


_CHECK_NICENESS = 10


class _SliceStream:
    """The unpickler's input: one variable's slice at a time, each once it is verified.

    The unpickler reads a slice up to its ``STOP`` and never past it, so a read serves
    the slice in hand only, and ``peek`` (the unpickler's read-ahead) offers no more than
    what is left of it: it waits for a slice, checked on the pool, only when it starts
    the variable. Rejected: the slices laid end to end in one buffer before the first
    load, which hashed every slice before unpickling any, and copied them once more.
    """

    def __init__(self, pending: list[bytes | Future[bytes]], first: bytes) -> None:
        self.pending = deque(pending)
        """Slices still to come, in order: checked already (small slices, read from the
        database at once), or being checked on the pool."""
        self._data = memoryview(first)
        self._at = 0

    def next_slice(self) -> None:
        """Move to the next variable's slice (waiting until it is verified)."""
        coming = self.pending.popleft()
        self._data = memoryview(coming if isinstance(coming, bytes) else coming.result())
        self._at = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else min(len(self._data), self._at + size)
        chunk = self._data[self._at : end].tobytes()
        self._at = end
        return chunk

    def readinto(self, target: bytearray | memoryview) -> int:
        count = min(len(target), len(self._data) - self._at)
        memoryview(target).cast("B")[:count] = self._data[self._at : self._at + count]
        self._at += count
        return count

    def readline(self) -> bytes:
        rest = self._data[self._at :]
        end = _find_newline(rest)
        return self.read(len(rest) if end < 0 else end + 1)

    def peek(self, size: int = 0) -> bytes:
        return self._data[self._at : self._at + max(size, 1)].tobytes()


_LINE_SCAN = 4096


def _find_newline(view: memoryview) -> int:
    """Index of the first newline in ``view``, or -1 (without copying it whole)."""
    for start in range(0, len(view), _LINE_SCAN):
        found = bytes(view[start : start + _LINE_SCAN]).find(b"\n")
        if found >= 0:
            return start + found
    return -1


class _BufferFeed:
    """The unpickler's buffer iterator: yields the current variable's verified buffers.

    An object rather than a generator, because the unpickler keeps one iterator for the
    whole stream, and a generator that ran dry once could not serve the next variable.
    """

    def __init__(self) -> None:
        self._queue: deque[Future[Buffer]] = deque()

    def start(self, buffers: list[Future[Buffer]]) -> None:
        """Serve ``buffers`` next, in this order, each once its hash matched."""
        self._queue = deque(buffers)

    def __iter__(self) -> _BufferFeed:
        return self

    def __next__(self) -> Buffer:
        if not self._queue:
            raise StopIteration
        return self._queue.popleft().result()


def _import(entry: VariableEntry) -> Any:
    assert entry.module is not None, "module entries name their module"
    try:
        return importlib.import_module(entry.module)
    except ImportError as exc:
        raise ContextError(
            "snapshot_module_missing",
            f"variable {entry.name!r} is the module {entry.module!r}, which cannot be "
            f"imported here: {exc}",
            name=entry.name,
            hint=f"install {entry.module.split('.')[0]!r} in this environment",
        ) from exc


def _corrupt(artifact_id: str, name: str, check: str = "hash") -> ArtifactCorruptError:
    against = "its hash" if check == "hash" else "the checksum its snapshot recorded"
    return ArtifactCorruptError(
        "artifact_corrupt",
        f"artifact {artifact_id} of variable {name!r} is damaged: its bytes do not match {against}",
        name=artifact_id,
        hint="run `nbflow verify` to list damaged artifacts; restore an earlier snapshot",
        details={"variable": name},
    )


def _about_variable(exc: NbflowError, name: str) -> NbflowError:
    """The same error, saying which variable the artifact belongs to."""
    return type(exc)(
        exc.code,
        f"{exc.message} (variable {name!r})",
        name=exc.name,
        hint=exc.hint,
        details={**exc.details, "variable": name},
        retryable=exc.retryable,
    )


def _unloadable(document: SnapshotDocument, entry: VariableEntry, exc: Exception) -> ContextError:
    hint = "re-run the cell that defines it, or install what it needs"
    if document.python != python_version():
        hint = (
            f"the snapshot was written by Python {document.python} and this is "
            f"{python_version()}: functions and classes only load on the same version"
        )
    return ContextError(
        "snapshot_variable_unloadable",
        f"variable {entry.name!r} ({entry.type_name}) cannot be restored: "
        f"{type(exc).__name__}: {exc}",
        name=entry.name,
        hint=hint,
        details={"type": entry.type_name},
    )
