"""Capture: the namespace as one pickle stream cut into per-variable segments.

Identity. Variables are pickled in one order (:func:`load_order`) by *one* pickler whose
memo lives across them (a ``dump`` per variable), so ``b = a`` and an object shared by two
containers are written once and come back as one object. The stream is cut at every
``dump``: each variable's slice is an artifact of its own, and loading the slices in order
with one unpickler rebuilds the shared memo.

Order. Values of the array libraries (NumPy, pandas, Arrow, ...) come after all others, each
group in name order. Their bulk is out-of-band buffers, which a restore must check before
the unpickler gets them; loading them last lets those checks run on the other cores while
the unpickler rebuilds everything else, instead of making it wait at the first array.

Designs considered and rejected:

* A pickler per variable, grouping variables that share objects. Finding the sharing needs
  the memo's contents, and copying the C pickler's memo costs ~0.3 s per 300k objects: more
  than the whole incremental checkpoint budget.
* The whole namespace as one ``dumps`` of a dict: identity is kept, but a variable that
  cannot be pickled fails the lot, and nothing unchanged could be skipped on write.

Cost of the chosen design: a slice's bytes hold memo numbers, so when a variable changes
*structure* (gains or loses objects) the slices of the variables after it in that order
change bytes too and are written again. Only in-band bytes are concerned; buffers, the bulk
of big data, are out of band and content-addressed, so they are never rewritten. A scalar
change rewrites one tiny slice.

Failures. A variable that cannot be pickled (or whose pickled bytes turn out to hold a
secret) leaves half its objects in the memo, which later slices could refer to; the stream
is then started again without it. To keep that rare, values that are certainly live state
are set aside by type first, and variables that failed last time are tried alone first.

Writing. A variable's slice is final once it is pickled and has passed the secret scan (a
later restart leaves earlier slices byte for byte the same), and only then are its slice and
buffers stored, so a withheld variable's bytes, buffers included, never become artifacts.
Buffers are hashed as pickle hands them over, and written by worker threads while pickling
goes on, inside one :meth:`ArtifactStore.batch`; the document is written last.

Early writes. Array variables come last in the stream, so their buffers, the bulk of the
bytes, would reach the disk only after every other variable is pickled. Before the stream,
each array variable holding at least :data:`EARLY_MIN` bytes is pickled alone, its buffers
out of band (no copy) and its in-band bytes secret-scanned; a clean one's new buffers start
writing to temp files at once. They become artifacts only when a final slice of the stream
refers to them, and are deleted otherwise (:mod:`.writer`), so the rule above holds.
"""

from __future__ import annotations

import gc
import io
import math
import os
import pickle
import sys
import time
import types
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from nbflow.hashing.ids import content_id
from nbflow.hashing.redact import KnownSecrets
from nbflow.hashing.secrets import find_secrets_in_text
from nbflow.snapshot.buffers import OUT_OF_BAND_MIN, BufferHasher, BufferJob, Fingerprints
from nbflow.snapshot.document import (
    Encoding,
    SnapshotDocument,
    VariableEntry,
    VariableStatus,
    python_version,
)
from nbflow.snapshot.filters import (
    LIVE_HINT,
    SecretScreen,
    is_ipython_name,
    live_state_reason,
    secret_strings,
    type_name,
)
from nbflow.snapshot.pickling import NamespacePickler
from nbflow.snapshot.report import CaptureReport, VariableNote
from nbflow.snapshot.scan import scan_segment
from nbflow.snapshot.writer import Slice, SliceWriter
from nbflow.store.artifacts import ArtifactStore

_REASON_MAX = 300
EARLY_MIN = 8 * 1024 * 1024
"""Array variables holding this much or more start their writes early (``_start_early``)."""
EARLY_IN_BAND_MAX = 1024 * 1024
"""The most in-band bytes an array variable pickled alone may have to start early."""


@dataclass
class CaptureMemory:
    """What a codec keeps between captures so that the next one is cheap."""

    fingerprints: Fingerprints = field(default_factory=Fingerprints)
    clean_segments: frozenset[str] = frozenset()
    """Content ids of slices that passed the secret scan."""
    clean_generation: int = -1
    """The generation of the known secrets ``clean_segments`` were checked against."""
    retry_alone: frozenset[str] = frozenset()
    """Names that failed inside the stream last time: tried alone first next time."""
    last_notes: frozenset[VariableNote] = frozenset()
    screen: SecretScreen = field(default_factory=SecretScreen)
    entries: dict[str, VariableEntry] = field(default_factory=dict)
    """The stored entries of the last capture, by name: an unchanged variable's entry is
    used again as it is."""
    big_arrays: frozenset[tuple[str, int]] = frozenset()
    """``(name, bulk_hint)`` of the last capture's big array variables: one as big again
    has buffers of sizes the fingerprints know, so it is not pickled alone to start early."""


class _Sink:
    """The file the pickler writes to; the buffer behind it is swapped per variable."""

    def __init__(self) -> None:
        self.current = io.BytesIO()

    def write(self, data: bytes | memoryview) -> int:
        """Append to the current variable's slice."""
        return self.current.write(data)


class _InBandTooLargeError(Exception):
    """A trial pickle wrote more in-band bytes than it may."""


class _CappedSink(_Sink):
    """A sink that stops the pickler past ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self._limit = limit

    def write(self, data: bytes | memoryview) -> int:
        """Append, or raise :class:`_InBandTooLargeError` past the limit."""
        if self.current.tell() + len(data) > self._limit:
            raise _InBandTooLargeError
        return self.current.write(data)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold the cyclic collector: pickling allocates nothing cyclic, and a collection in
    the middle would walk the whole heap of a large notebook for nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def home_globals(namespace: Mapping[str, Any]) -> tuple[dict[str, Any], ...]:
    """Globals dicts whose functions are the notebook's own (see :mod:`.pickling`)."""
    homes: list[dict[str, Any]] = []
    if isinstance(namespace, dict):
        homes.append(namespace)
    main = sys.modules.get("__main__")
    if main is not None and main.__dict__ is not namespace:
        homes.append(main.__dict__)
    return tuple(homes)


class Capture:
    """One capture of one namespace; use :meth:`run` once."""

    def __init__(
        self,
        artifacts: ArtifactStore,
        memory: CaptureMemory,
        workers: int,
        secrets: KnownSecrets | None = None,
        owned: Callable[[str, Any], bool] | None = None,
    ) -> None:
        self._artifacts = artifacts
        self._owned = owned
        """Whether a name's value is IPython's (a kernel decides from its shell); without
        it, IPython's names are known by name."""
        self._secrets = secrets if secrets is not None else KnownSecrets()
        self._memory = memory
        self._workers = workers
        self._entries: dict[str, VariableEntry] = {}
        self._candidates: dict[str, Any] = {}
        self._excluded_in_stream: set[str] = set()
        self._homes: tuple[dict[str, Any], ...] = ()
        self._late: set[str] = set()
        self._clean: set[str] = set()
        """Content ids of in-band bytes that passed the secret scan."""
        self._early_clean: set[str] = set()
        """Those of them that are array variables pickled alone by :meth:`_start_early`."""
        self._big: set[tuple[str, int]] = set()
        """``(name, bulk_hint)`` of this capture's big array variables."""

    def run(self, namespace: Mapping[str, Any]) -> tuple[str, SnapshotDocument, CaptureReport]:
        """Store the namespace; returns the snapshot id, its document and the report."""
        started = time.perf_counter()
        self._homes = home_globals(namespace)
        self._sort(namespace)
        if self._memory.clean_generation == self._secrets.generation:
            self._clean = set(self._memory.clean_segments)  # else judge every slice again
        hasher = BufferHasher(self._memory.fingerprints, self._workers)
        writer = SliceWriter(self._artifacts, self._workers)
        try:
            with self._artifacts.batch():
                with gc_paused():
                    for name in sorted(self._memory.retry_alone & self._candidates.keys()):
                        self._try_alone(name)
                    self._start_early(hasher, writer)
                    slices = self._stream(hasher, writer)
                writer.finish()
                before = self._memory.entries
                for piece in slices:
                    self._entries[piece.name] = _stored_entry(piece, before.get(piece.name))
                # Every entry was validated when it was made: checking them all again at
                # every capture would cost time in proportion to the namespace.
                document = SnapshotDocument.model_construct(
                    python=python_version(),
                    variables=tuple(
                        self._entries[name] for name in load_order(self._entries, self._late)
                    ),
                )
                data = document.to_bytes()
                snapshot_id = content_id(data)
                writer.put(snapshot_id, memoryview(data))
                self._artifacts.sign(snapshot_id)
            jobs = [job for piece in slices for job in piece.jobs]
            self._memory.fingerprints.replace(hasher.fingerprint_entries(jobs))
        finally:
            writer.close()
            hasher.close()
        report = self._report(snapshot_id, document, writer, hasher, started)
        self._memory.clean_segments = frozenset(piece.digest for piece in slices).union(
            self._early_clean
        )
        self._memory.clean_generation = self._secrets.generation
        self._memory.big_arrays = frozenset(self._big)
        self._memory.retry_alone = frozenset(self._excluded_in_stream)
        self._memory.last_notes = frozenset(report.notes)
        self._memory.entries = {piece.name: self._entries[piece.name] for piece in slices}
        return snapshot_id, document, report

    # -- choosing what to pickle ---------------------------------------------------------

    def _sort(self, namespace: Mapping[str, Any]) -> None:
        for name in sorted(n for n in namespace if isinstance(n, str)):
            value = namespace[name]
            if self._owned(name, value) if self._owned is not None else is_ipython_name(name):
                continue
            try:
                withheld = self._memory.screen.withhold_reason(name, value)
            except Exception as exc:  # a value whose inspection fails is not trusted
                withheld = f"it could not be checked for secrets ({type(exc).__name__})"
            if withheld is not None:
                for text in secret_strings(value):
                    self._secrets.add(text, f"the variable {name!r}")
                self._note(name, value, VariableStatus.WITHHELD, withheld)
            elif isinstance(value, types.ModuleType):
                self._module(name, value)
            elif (live := live_state_reason(value)) is not None:
                self._note(name, value, VariableStatus.SKIPPED, f"{live}; {LIVE_HINT}")
            else:
                self._candidates[name] = value
        self._late = {name for name, value in self._candidates.items() if loads_late(value)}
        order = load_order(self._candidates, self._late)
        self._candidates = {name: self._candidates[name] for name in order}

    def _module(self, name: str, module: types.ModuleType) -> None:
        module_name = module.__name__
        if sys.modules.get(module_name) is module and module_name != "__main__":
            self._entries[name] = VariableEntry(
                name=name,
                type_name=type_name(module),
                status=VariableStatus.STORED,
                encoding=Encoding.MODULE,
                module=module_name,
            )
        else:
            self._note(
                name, module, VariableStatus.SKIPPED, f"module {module_name!r} is not importable"
            )

    def _note(self, name: str, value: Any, status: VariableStatus, reason: str) -> None:
        self._candidates.pop(name, None)
        self._entries[name] = VariableEntry(
            name=name, type_name=type_name(value), status=status, reason=reason
        )

    # -- pickling ------------------------------------------------------------------------

    def _pickler(self, sink: _Sink, keep: Callable[[memoryview], None] | None) -> NamespacePickler:
        """A pickler that hands big contiguous buffers to ``keep`` out of band; without
        ``keep`` (a trial) everything stays in band."""

        def out_of_band(buffer: pickle.PickleBuffer) -> bool:
            if keep is None:
                return False
            try:
                view = buffer.raw()
            except BufferError:  # not contiguous: pickle copies it in band
                return True
            if view.nbytes < OUT_OF_BAND_MIN:
                return True
            keep(view)
            return False

        return NamespacePickler(sink, home_globals=self._homes, buffer_callback=out_of_band)

    def _try_alone(self, name: str) -> None:
        sink = _Sink()
        pickler = self._pickler(sink, None)
        try:
            pickler.dump(self._candidates[name])
        except Exception as exc:
            self._exclude(name, VariableStatus.SKIPPED, _failure(exc, self._secrets))
            return
        found = self._scan(sink.current.getvalue())
        if found is not None:
            self._exclude(name, VariableStatus.WITHHELD, _looks_like(found))

    def _start_early(self, hasher: BufferHasher, writer: SliceWriter) -> None:
        """Start writing the big buffers of array variables before the stream reaches them
        (it pickles the others first): each is pickled alone, its buffers out of band and
        its in-band bytes (at most :data:`EARLY_IN_BAND_MAX`) secret-scanned, and only a
        clean one starts. The stream later meets the same buffers (``hasher`` knows them
        by their exporting object), whose writes then count for its slices; those no
        stored slice refers to are dropped (see :class:`SliceWriter`)."""
        for name, value in self._candidates.items():
            hint = bulk_hint(value) if name in self._late else 0
            if hint < EARLY_MIN:
                continue
            self._big.add((name, hint))
            if (name, hint) in self._memory.big_arrays:
                continue  # as big as last time: its buffers' sizes are known, none is fresh
            sink = _CappedSink(EARLY_IN_BAND_MAX)
            views: list[memoryview] = []
            try:
                self._pickler(sink, views.append).dump(value)
            except Exception:  # too much in band, or a failure the stream will report
                continue
            data = sink.current.getvalue()
            digest = content_id(data)
            if digest not in self._clean:
                if self._scan(data) is not None:
                    continue  # the stream decides, and withholds it
                self._clean.add(digest)
            self._early_clean.add(digest)
            size = len(data) + sum(view.nbytes for view in views)
            for view in views:
                writer.start_early(hasher.add(view), name, size)

    def _stream(self, hasher: BufferHasher, writer: SliceWriter) -> list[Slice]:
        while True:
            sink = _Sink()
            jobs: list[list[BufferJob]] = [[]]
            pickler = self._pickler(sink, _job_keeper(hasher, jobs))
            slices: list[Slice] = []
            for name, value in self._candidates.items():
                sink.current = io.BytesIO()
                jobs[0] = []
                try:
                    pickler.dump(value)
                except Exception as exc:
                    self._exclude(name, VariableStatus.SKIPPED, _failure(exc, self._secrets))
                    break
                data = sink.current.getvalue()
                digest = content_id(data)
                if digest not in self._clean:
                    found = self._scan(data)
                    if found is not None:
                        self._exclude(name, VariableStatus.WITHHELD, _looks_like(found))
                        break
                    self._clean.add(digest)
                piece = Slice(name, type_name(value), data, digest, jobs[0])
                # Final now: a later failure restarts the stream without changing this
                # slice's bytes, so its artifacts can go to disk while pickling goes on.
                writer.store(piece)
                slices.append(piece)
            else:
                return slices

    def _scan(self, data: bytes) -> str | None:
        """What secret a slice holds: a known value, or one that looks like a secret."""
        source = self._secrets.occurs_in(data)
        if source is not None:
            return f"the value of {source}"
        return scan_segment(data)

    def _exclude(self, name: str, status: VariableStatus, reason: str) -> None:
        self._excluded_in_stream.add(name)
        self._note(name, self._candidates[name], status, reason)

    def _report(
        self,
        snapshot_id: str,
        document: SnapshotDocument,
        writer: SliceWriter,
        hasher: BufferHasher,
        started: float,
    ) -> CaptureReport:
        withheld = tuple(
            VariableNote(v.name, v.status, v.reason or "")
            for v in document.variables
            if v.status == VariableStatus.WITHHELD
        )
        skipped = tuple(
            VariableNote(v.name, v.status, v.reason or "")
            for v in document.variables
            if v.status == VariableStatus.SKIPPED
        )
        return CaptureReport(
            snapshot_id=snapshot_id,
            stored=tuple(sorted(document.names(VariableStatus.STORED))),
            withheld=withheld,
            skipped=skipped,
            new_notes=tuple(n for n in withheld + skipped if n not in self._memory.last_notes),
            bytes_written=writer.bytes_written,
            artifacts_written=writer.artifacts_written,
            bytes_hashed=hasher.bytes_hashed,
            bytes_fingerprinted=hasher.bytes_fingerprinted,
            seconds=time.perf_counter() - started,
        )


_ARRAY_LIBRARIES = frozenset(
    {"numpy", "pandas", "pyarrow", "polars", "torch", "xarray", "scipy", "jax", "cupy"}
)


def loads_late(value: Any) -> bool:
    """Whether ``value`` likely pickles to out-of-band buffers: an array library's type,
    or a bytearray. A guess by type that only decides the order; any order is correct."""
    if isinstance(value, bytearray):
        return True
    module = getattr(type(value), "__module__", None) or ""
    return module.partition(".")[0] in _ARRAY_LIBRARIES


def _job_keeper(hasher: BufferHasher, jobs: list[list[BufferJob]]) -> Callable[[memoryview], None]:
    """Hands each buffer to ``hasher`` and keeps its job in ``jobs[0]``, the current
    variable's list."""

    def keep(view: memoryview) -> None:
        jobs[0].append(hasher.add(view))

    return keep


def bulk_hint(value: Any) -> int:
    """Bytes of array data ``value`` likely holds, 0 when it does not say: its ``nbytes``
    (NumPy, Arrow, torch, a pandas Series), else 8 bytes per element of its ``shape`` (a
    pandas or polars frame). A guess that decides only when writes start; it costs
    microseconds, where a frame's ``memory_usage`` takes about a millisecond."""
    try:
        nbytes = getattr(value, "nbytes", None)
        if isinstance(nbytes, int):
            return nbytes
        shape = getattr(value, "shape", None)
        if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape):
            return 8 * math.prod(shape)
    except Exception:  # a hint only: no answer means no early start
        return 0
    return 0


def load_order(names: Iterable[str], late: Collection[str]) -> list[str]:
    """``names`` in stream order: those in ``late`` after the others, each group sorted."""
    return sorted(names, key=lambda name: (name in late, name))


def _stored_entry(piece: Slice, before: VariableEntry | None) -> VariableEntry:
    """The entry of a stored slice; ``before``, the variable's entry in the last capture,
    when it says the same (most variables of a namespace do not change)."""
    buffers = tuple(job.artifact_id() for job in piece.jobs)
    checksums = tuple(job.checksum() for job in piece.jobs)
    if (
        before is not None
        and before.pickle == piece.digest
        and before.buffers == buffers
        and before.checksums == checksums
        and before.type_name == piece.type_name
    ):
        return before
    return VariableEntry(
        name=piece.name,
        type_name=piece.type_name,
        status=VariableStatus.STORED,
        encoding=Encoding.PICKLE,
        size=len(piece.data) + sum(job.nbytes for job in piece.jobs),
        pickle=piece.digest,
        buffers=buffers,
        checksums=checksums,
    )


def _failure(exc: BaseException, secrets: KnownSecrets) -> str:
    message = str(exc).splitlines()[0] if str(exc) else ""
    reason = f"it cannot be pickled: {type(exc).__name__}: {message}"[:_REASON_MAX]
    # An error message may quote the value; the reason is written to disk, so it must not
    # carry a secret either.
    if find_secrets_in_text(reason) or secrets.find(reason):
        reason = f"it cannot be pickled: {type(exc).__name__}"
    return f"{reason}; {LIVE_HINT} if it is a connection or a handle"


def _looks_like(kind: str) -> str:
    return f"its pickled form contains what looks like a secret ({kind})"


def default_workers() -> int:
    """Worker threads for hashing and writing: one per core, at most four."""
    return max(1, min(4, os.cpu_count() or 1))
