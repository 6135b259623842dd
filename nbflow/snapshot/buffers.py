"""Out-of-band buffers: hashed in place on worker threads, written only when new.

Every buffer pickle hands out of band (NumPy arrays, pandas blocks, Arrow buffers) becomes
one artifact named by the blake3 hash of its bytes, read straight from the object's memory
through ``PickleBuffer.raw()``: no copy is made anywhere on the way to the disk.

Incremental cost. Content addressing alone makes an unchanged buffer cost no write, but it
still costs a blake3 pass (about 5 GB/s per core here). :class:`Fingerprints` remembers, for
every buffer of the previous capture, ``(nbytes, xxh3_128 of the full content) -> blake3
id``. A buffer whose size matches a remembered one is first fingerprinted with xxh3 (over
10 GB/s per core, in 64 MiB pieces on all cores); on a hit its id is known without blake3.
The fingerprint covers every byte, so an in-place change anywhere is seen. Its weakness is
that xxh3 is not cryptographic: two *different* contents with the same size and the same
128-bit xxh3 would be confused. That takes a deliberate collision crafted against the
user's own notebook, which nbflow does not defend against; accidental collisions are
~2**-128. Keying by the buffer's memory address as well was considered and rejected: it
adds nothing against a crafted collision and loses the hit when equal data moves (a copy).

First capture. A buffer of a size never seen is blake3-hashed at once, while pickling of
the following variables goes on, and fingerprinted only after that, while the disk is busy
writing it, so that the fingerprint costs little wall time.

Checksums. The signed snapshot document also records each buffer's checksum, xxh3_128 of
its whole content in one call (:mod:`nbflow.hashing.checksums`), so that a restore can check a
memory-mapped buffer at xxh3's speed instead of blake3's (:mod:`.restore`). Whole, not in
pieces: a restore checks buffers on worker threads while the unpickler holds the GIL in
long C calls, and a thread that needed the GIL again after every piece would wait for the
unpickler. For a buffer of one piece the checksum is the fingerprint; for a bigger one it
is computed once, on the fingerprint threads after blake3, and remembered with the
fingerprint, so an unchanged buffer costs nothing more.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import blake3
import xxhash

from nbflow.hashing.checksums import CHECKSUM_ALGORITHM, checksum_of
from nbflow.hashing.ids import ALGORITHM

OUT_OF_BAND_MIN = 64 * 1024
"""Smaller buffers stay in the pickle stream: an artifact each would cost more than a copy."""
PIECE = 64 * 1024 * 1024
"""Fingerprint piece: big enough to amortise a task, small enough to use both cores."""


def pieces_of(view: memoryview) -> list[memoryview]:
    """The pieces a buffer is fingerprinted in, in order (one, possibly empty, at least)."""
    return [view[start : start + PIECE] for start in range(0, max(view.nbytes, 1), PIECE)]


def piece_digest(piece: memoryview) -> bytes:
    """xxh3_128 of one piece."""
    return xxhash.xxh3_128(piece).digest()


def combined(digests: list[bytes]) -> bytes:
    """The fingerprint of a buffer from its pieces' digests."""
    if len(digests) == 1:
        return digests[0]
    return xxhash.xxh3_128(b"".join(digests)).digest()


@dataclass(frozen=True)
class Known:
    """What the last capture learnt of one buffer content."""

    artifact_id: str
    checksum: str


class Fingerprints:
    """``(nbytes, xxh3 fingerprint) -> (blake3 id, checksum)`` of the buffers of the last
    capture."""

    def __init__(self) -> None:
        self._known: dict[tuple[int, bytes], Known] = {}
        self._sizes: frozenset[int] = frozenset()

    def knows_size(self, nbytes: int) -> bool:
        """Whether a buffer of this size was seen, so fingerprinting first may pay."""
        return nbytes in self._sizes

    def lookup(self, nbytes: int, fingerprint: bytes) -> Known | None:
        """The ids of the content with this size and fingerprint, if known."""
        return self._known.get((nbytes, fingerprint))

    def replace(self, entries: dict[tuple[int, bytes], Known]) -> None:
        """Keep exactly ``entries``: the buffers of the capture that just succeeded."""
        self._known = dict(entries)
        self._sizes = frozenset(nbytes for nbytes, _ in entries)


@dataclass
class BufferJob:
    """One out-of-band buffer of this capture and the work on it."""

    view: memoryview
    owner: Any
    """The exporting object, kept alive so that ``id(owner)`` stays unique."""
    pieces: list[Future[bytes]] = field(default_factory=list)
    artifact: Future[str] | None = None
    whole: Future[str] | None = None
    """The checksum, when the buffer has several pieces and its content was not known."""
    known: Known | None = None
    """Set when the fingerprint matched the last capture's."""
    fresh: bool = False
    """No buffer of its size was in the last capture: its content is almost surely new,
    so it is written while it is hashed (see :meth:`ArtifactStore.write_ahead`)."""

    @property
    def nbytes(self) -> int:
        """Size of the buffer."""
        return self.view.nbytes

    def artifact_id(self) -> str:
        """The blake3 content id of the buffer, waiting for it if needed."""
        assert self.artifact is not None, "BufferHasher.add sets it"
        return self.artifact.result()

    def fingerprint(self) -> bytes:
        """xxh3_128 of the content (of the piece digests when there are several pieces)."""
        return combined([piece.result() for piece in self.pieces])

    def checksum(self) -> str:
        """The checksum the snapshot document records, waiting for it if needed."""
        self.artifact_id()  # sets ``known`` or ``whole``
        if self.known is not None:
            return self.known.checksum
        if self.whole is not None:
            return self.whole.result()
        return f"{CHECKSUM_ALGORITHM}:{self.fingerprint().hex()}"


class BufferHasher:
    """Fingerprints and hashes buffers on worker threads while the caller keeps pickling."""

    def __init__(self, fingerprints: Fingerprints, workers: int) -> None:
        self._fingerprints = fingerprints
        self._piece_pool = ThreadPoolExecutor(workers, thread_name_prefix="nbflow-xxh3")
        # One thread suffices for blake3: each hash spreads over all cores by itself.
        self._hash_pool = ThreadPoolExecutor(1, thread_name_prefix="nbflow-blake3")
        self._jobs: dict[tuple[int, int], BufferJob] = {}
        self._lock = threading.Lock()
        self.bytes_hashed = 0
        self.bytes_fingerprinted = 0

    def add(self, view: memoryview) -> BufferJob:
        """Start work on ``view``; a buffer seen before in this capture is not redone."""
        owner = view.obj
        key = (id(owner), view.nbytes)
        job = self._jobs.get(key)
        if job is not None:
            return job
        job = BufferJob(view=view, owner=owner)
        self._jobs[key] = job
        if self._fingerprints.knows_size(view.nbytes):
            self._submit_pieces(job)
            job.artifact = self._hash_pool.submit(self._resolve, job)
        else:
            job.fresh = True
            job.artifact = self._hash_pool.submit(self._blake3_first, job)
        return job

    def _submit_pieces(self, job: BufferJob) -> None:
        for piece in pieces_of(job.view):
            job.pieces.append(self._piece_pool.submit(self._xxh3, piece))

    def _xxh3(self, piece: memoryview) -> bytes:
        with self._lock:
            self.bytes_fingerprinted += piece.nbytes
        return piece_digest(piece)

    def _blake3(self, view: memoryview) -> str:
        with self._lock:
            self.bytes_hashed += view.nbytes
        return f"{ALGORITHM}:{blake3.blake3(view, max_threads=blake3.blake3.AUTO).hexdigest()}"

    def _blake3_first(self, job: BufferJob) -> str:
        artifact_id = self._blake3(job.view)
        # Queued only now so as not to slow down the hash the writer waits for; they run
        # while the disk is busy. Queued before the result is set, so that whoever sees the
        # id also sees the pieces.
        self._submit_pieces(job)
        self._submit_whole(job)
        return artifact_id

    def _submit_whole(self, job: BufferJob) -> None:
        if len(job.pieces) > 1:
            job.whole = self._piece_pool.submit(checksum_of, job.view)

    def _resolve(self, job: BufferJob) -> str:
        # Runs on the blake3 thread; waiting there on the piece pool cannot deadlock.
        job.known = self._fingerprints.lookup(job.nbytes, job.fingerprint())
        if job.known is not None:
            return job.known.artifact_id
        artifact_id = self._blake3(job.view)
        self._submit_whole(job)
        return artifact_id

    def fingerprint_entries(self, jobs: list[BufferJob]) -> dict[tuple[int, bytes], Known]:
        """The cache entries for ``jobs``, once all their hashing is done."""
        return {
            (job.nbytes, job.fingerprint()): Known(job.artifact_id(), job.checksum())
            for job in jobs
        }

    def close(self) -> None:
        """Stop the worker threads, abandoning queued work."""
        self._piece_pool.shutdown(wait=True, cancel_futures=True)
        self._hash_pool.shutdown(wait=True, cancel_futures=True)
        self._jobs.clear()
