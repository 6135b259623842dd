"""Content-addressed artifact store: small artifacts in the database, large ones as files.

Large artifacts are written to ``tmp/``, fsynced, renamed to ``objects/<2 hex>/<rest>`` and
their folder fsynced, so a reader never sees half an artifact and an acknowledged one
survives a power cut.

Small artifacts (at most :data:`INLINE_MAX` bytes: snapshot documents, manifests, small
variables) live in the ``blobs`` table of ``nbflow.db``. Inside :meth:`ArtifactStore.batch`
they are held back and committed in the same SQLite transaction as the next event, which is
the event that references them; outside a batch each is committed at once. A state whose
context changed then costs one durable commit instead of a commit plus two fsyncs of a
file and its folder. Rejected alternative: every artifact as a file, which tripled the
per-state cost of small states on the disks nbflow targets.

Every read checks the bytes against the id, whichever tier holds them; damaged bytes are
never returned.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import mmap
import os
import secrets
import sqlite3
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from nbflow.errors import ArtifactCorruptError, StorageError
from nbflow.hashing.checksums import ChecksumHasher, checksum_of
from nbflow.hashing.ids import (
    ALGORITHM,
    content_id,
    content_id_of_buffers,
    digest_of,
    is_content_id,
    new_hasher,
)
from nbflow.store import faults
from nbflow.store.blobs import SqliteBlobs
from nbflow.store.database import Database
from nbflow.store.layout import FILE_MODE, HomeLayout, ensure_dir, fsync_dir
from nbflow.store.signing import SigningKey, SqliteSignatures, UntrustedHistoryError
from nbflow.store.writeback import start_writeback

INLINE_MAX = 16 * 1024
"""Artifacts up to this many bytes are kept in the database rather than as files."""

_WRITE_CHUNK = 1 << 24
"""Bytes per ``os.write``; the disk starts on each chunk while the next one is copied."""
_READ_CHUNK = 1 << 24


class ArtifactStore:
    """Immutable byte blobs named by their content hash; documents signed by this user."""

    def __init__(
        self,
        layout: HomeLayout,
        inline: SqliteBlobs | None = None,
        *,
        database: Database | None = None,
        signatures: SqliteSignatures | None = None,
        key: SigningKey | None = None,
    ) -> None:
        self._layout = layout
        self._objects = str(layout.objects)
        self._inline = inline
        self._database = database
        self._signatures = signatures
        self.key = key
        """This user's signing key; None for a store that neither signs nor checks."""
        self._batch_depth = 0
        self._deferred_dirs: set[Path] = set()
        self._pending: dict[str, bytes] = {}
        self._pending_signatures: dict[str, tuple[str, str, str]] = {}
        self._taken: tuple[list[str], list[str]] = ([], [])
        self._remove_stale_temp_files()
        if database is not None:
            database.add_commit_hooks(self._commit_in, self._committed)

    # -- writing -----------------------------------------------------------------------

    def put(self, data: bytes | memoryview) -> str:
        """Store ``data`` and return its id; content already stored is not written again."""
        artifact_id = content_id(data)
        if not self.exists(artifact_id):
            self._store(artifact_id, (data,), len(data) if isinstance(data, bytes) else data.nbytes)
        return artifact_id

    def put_buffers(self, buffers: Iterable[bytes | memoryview]) -> str:
        """Store the concatenation of ``buffers`` without concatenating them in memory."""
        views = [memoryview(b).cast("B") for b in buffers]
        artifact_id = content_id_of_buffers(views)
        if not self.exists(artifact_id):
            self._store(artifact_id, views, sum(v.nbytes for v in views))
        return artifact_id

    def put_known(self, artifact_id: str, buffers: Iterable[bytes | memoryview]) -> bool:
        """Store ``buffers`` under an id the caller already computed; False if already there.

        The caller vouches for the id (it hashed the same buffers); reads still verify it.
        """
        if self.exists(artifact_id):
            return False
        views = [memoryview(b).cast("B") for b in buffers]
        self._store(artifact_id, views, sum(v.nbytes for v in views))
        return True

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Group writes: folder fsyncs and small artifacts are made durable together.

        They become durable with the next event appended to the event store, or when the
        outermost block exits, whichever comes first. Do not hand ids written inside the
        block to another process before either has happened.
        """
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0:
                self.flush()

    def flush(self) -> None:
        """Make every write so far durable."""
        if self._database is None:
            self._sync_deferred_dirs()
            return
        if self._pending or self._pending_signatures or self._deferred_dirs:
            with self._database.transaction(carry=True):
                pass

    def _commit_in(self, conn: sqlite3.Connection) -> None:
        """Inside a carrying transaction: fsync deferred folders, and add the held-back
        small artifacts and signatures, so they are durable with the events."""
        self._sync_deferred_dirs()
        blobs = list(self._pending.items())
        signatures = list(self._pending_signatures.values())
        if blobs and self._inline is not None:
            self._inline.insert_in(conn, blobs)
        if signatures and self._signatures is not None:
            self._signatures.insert_in(conn, signatures)
        self._taken = ([row[0] for row in blobs], [row[0] for row in signatures])

    def _committed(self) -> None:
        blob_ids, signed_ids = self._taken
        for artifact_id in blob_ids:
            self._pending.pop(artifact_id, None)
        for artifact_id in signed_ids:
            self._pending_signatures.pop(artifact_id, None)
        self._taken = ([], [])

    def _sync_deferred_dirs(self) -> None:
        folders, self._deferred_dirs = self._deferred_dirs, set()
        try:
            for folder in sorted(folders):
                faults.hit("artifact.dirsync")
                fsync_dir(folder)
        except OSError as exc:
            self._deferred_dirs |= folders
            raise StorageError(
                "artifact_write_failed",
                f"could not make new artifacts durable in {self._layout.objects}: "
                f"{exc.strerror or exc}",
                name=str(self._layout.objects),
                hint="check the disk; everything saved before is intact",
            ) from exc

    # -- signatures ----------------------------------------------------------------------

    def sign(self, artifact_id: str) -> None:
        """Sign the document ``artifact_id`` with this user's key (durable with the next
        event, inside a batch)."""
        if self.key is None or self._signatures is None:
            return
        row = (artifact_id, self.key.key_id, self.key.mac(artifact_id))
        if self._batch_depth:
            self._pending_signatures[artifact_id] = row
        else:
            self._signatures.put([row])

    def put_signed(self, data: bytes | memoryview) -> str:
        """:meth:`put` a document and sign it (in one commit)."""
        with self.batch():
            artifact_id = self.put(data)
            self.sign(artifact_id)
        return artifact_id

    def is_signed(self, artifact_id: str) -> bool:
        """Whether ``artifact_id`` carries a valid signature under this user's key."""
        if self.key is None or self._signatures is None:
            return True  # a store without keys (tests of lower layers) trusts itself
        if artifact_id in self._pending_signatures:
            return True
        stored = self._signatures.mac(artifact_id, self.key.key_id)
        return stored is not None and hmac.compare_digest(stored, self.key.mac(artifact_id))

    def require_signed(self, artifact_id: str, what: str) -> None:
        """Refuse (``untrusted_history``) unless ``artifact_id`` is signed by this user."""
        if self.is_signed(artifact_id):
            return
        folder = self._layout.root
        notebook_folder = folder.parent
        key = self.key.path if self.key is not None else "your key"
        raise UntrustedHistoryError(
            "untrusted_history",
            f"the history in {folder} was not made by you: {what} {artifact_id} is not "
            f"signed with your key ({key}); nothing of it was loaded or run",
            name=str(folder),
            hint="if you trust whoever made it, run `%flow trust` in the notebook or "
            f"`nbflow trust {notebook_folder}`: it checks every artifact, then adopts the "
            "history",
            details={"artifact": artifact_id, "folder": str(folder)},
        )

    def _store(self, artifact_id: str, buffers: Iterable[bytes | memoryview], size: int) -> None:
        if self._inline is not None and size <= INLINE_MAX:
            data = b"".join(buffers)
            if self._batch_depth:
                self._pending[artifact_id] = data
            else:
                self._inline.put_blobs([(artifact_id, data)])
            return
        self._write_file(artifact_id, buffers, size)

    def _write_file(
        self, artifact_id: str, buffers: Iterable[bytes | memoryview], size: int
    ) -> None:
        self._place(self._write_temp(buffers, size, artifact_id), artifact_id, size)

    def write_ahead(self, buffers: Iterable[bytes | memoryview], size: int) -> TempFile:
        """Write bytes whose id is still being computed to a temp file, not yet durable:
        :meth:`settle` names it (or drops it) once the id is known. The disk is busy while
        the hash is computed, rather than after."""
        return self._write_temp(buffers, size, "a new artifact")

    def settle(self, written: TempFile, artifact_id: str) -> bool:
        """Make a :meth:`write_ahead` file the artifact ``artifact_id``, durable and in
        place; if that artifact is stored already, drop the file. True when it was placed."""
        if self.exists(artifact_id):
            written.discard()
            return False
        self._place(written, artifact_id, written.size)
        return True

    def _write_temp(self, buffers: Iterable[bytes | memoryview], size: int, label: str) -> TempFile:
        tmp = self._layout.tmp / f"{os.getpid()}-{secrets.token_hex(8)}.tmp"
        try:
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
            except FileNotFoundError:
                ensure_dir(self._layout.tmp)
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        except OSError as exc:
            raise write_failure(label, size, exc) from exc
        written = TempFile(tmp, fd, size)
        try:
            faults.hit("artifact.write")
            offset = 0
            for buffer in buffers:
                view = memoryview(buffer).cast("B")
                while view:
                    count = os.write(fd, view[:_WRITE_CHUNK])
                    start_writeback(fd, offset, count)
                    offset += count
                    view = view[count:]
        except OSError as exc:
            written.discard()
            raise write_failure(label, size, exc) from exc
        return written

    def _place(self, written: TempFile, artifact_id: str, size: int) -> None:
        """fsync a written temp file and rename it to ``artifact_id``'s place."""
        final = self.path_of(artifact_id)
        try:
            try:
                faults.hit("artifact.fsync")
                os.fsync(written.fd)
            finally:
                written.close()
            ensure_dir(final.parent)
            faults.hit("artifact.rename")
            os.rename(written.path, final)
        except OSError as exc:
            written.discard()
            raise write_failure(artifact_id, size, exc) from exc
        self._deferred_dirs.add(final.parent)
        if not self._batch_depth:
            self._sync_deferred_dirs()

    # -- reading -----------------------------------------------------------------------

    def path_of(self, artifact_id: str) -> Path:
        """Where ``artifact_id`` is (or would be) stored if it is kept as a file."""
        return Path(self._file_name(artifact_id))

    def _file_name(self, artifact_id: str) -> str:
        try:
            digest = digest_of(artifact_id)
        except ValueError:
            raise StorageError(
                "artifact_id_invalid",
                f"{artifact_id!r} is not an artifact id",
                name=artifact_id,
                hint=f"artifact ids look like {ALGORITHM}:<64 hex digits>",
            ) from None
        # Strings, not Path objects: a capture asks this for every variable.
        return f"{self._objects}{os.sep}{digest[:2]}{os.sep}{digest[2:]}"

    def is_file(self, artifact_id: str) -> bool:
        """Whether ``artifact_id`` is kept as a file (and so can be memory-mapped)."""
        return os.path.isfile(self._file_name(artifact_id))

    def missing(self, artifact_ids: Iterable[str]) -> set[str]:
        """Which of ``artifact_ids`` are not stored (one query for all of them)."""
        wanted = [a for a in dict.fromkeys(artifact_ids) if a not in self._pending]
        stored = self._inline.stored_of(wanted) if self._inline is not None else set()
        return {a for a in wanted if a not in stored and not self.is_file(a)}

    def exists(self, artifact_id: str) -> bool:
        """Whether an artifact with this id is stored (its bytes are not checked)."""
        if self.is_file(artifact_id) or artifact_id in self._pending:
            return True
        return self._inline is not None and self._inline.has_blob(artifact_id)

    def size(self, artifact_id: str) -> int:
        """Stored size in bytes."""
        small = self._small(artifact_id)
        if small is not None:
            return len(small)
        try:
            return os.stat(self.path_of(artifact_id)).st_size
        except FileNotFoundError:
            raise self.not_found(artifact_id) from None

    def get(self, artifact_id: str) -> bytes:
        """The verified bytes of ``artifact_id``."""
        data = self._small(artifact_id)
        if data is None:
            try:
                data = self.path_of(artifact_id).read_bytes()
            except FileNotFoundError:
                raise self.not_found(artifact_id) from None
        if content_id(data) != artifact_id:
            raise self.corrupt(artifact_id)
        return data

    def raw(self, artifact_id: str) -> bytes | None:
        """The bytes stored under ``artifact_id`` *without* checking them, or None.

        For callers that check the bytes themselves and report damage in their own words.
        """
        data = self._small(artifact_id)
        if data is not None:
            return data
        try:
            return self.path_of(artifact_id).read_bytes()
        except FileNotFoundError:
            return None

    def raw_small(self, artifact_ids: Collection[str]) -> dict[str, bytes]:
        """The bytes of those of ``artifact_ids`` kept in the database, *without* checking
        them (see :meth:`raw`), in one query per 500 ids: a snapshot of many small
        variables reads its slices at once, not one query each."""
        wanted = list(dict.fromkeys(artifact_ids))
        for artifact_id in wanted:
            self._file_name(artifact_id)  # validates the id
        found = {i: self._pending[i] for i in wanted if i in self._pending}
        if self._inline is not None:
            found.update(self._inline.get_blobs([i for i in wanted if i not in found]))
        return found

    def open_mapped(self, artifact_id: str, *, verify: bool = True) -> mmap.mmap | bytes:
        """A read-only memory map of the artifact, hashed in place before it is returned.

        Small artifacts kept in the database, and empty ones, come back as verified bytes.
        """
        if not self.is_file(artifact_id):
            return self.get(artifact_id)
        path = self.path_of(artifact_id)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise self.not_found(artifact_id) from None
        try:
            if os.fstat(fd).st_size == 0:
                if verify and content_id(b"") != artifact_id:
                    raise self.corrupt(artifact_id)
                return b""
            mapped = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        if verify and content_id(memoryview(mapped)) != artifact_id:
            mapped.close()
            raise self.corrupt(artifact_id)
        return mapped

    def verify(self, artifact_id: str, checksums: Collection[str] = ()) -> bool:
        """Re-hash the stored bytes; False when they do not match the id, or any of the
        ``checksums`` recorded for them (:mod:`nbflow.hashing.checksums`), computed in the
        same pass."""
        small = self._small(artifact_id)
        if small is not None:
            return content_id(small) == artifact_id and all(
                checksum_of(small) == checksum for checksum in checksums
            )
        hasher = new_hasher()
        summer = ChecksumHasher() if checksums else None
        try:
            with open(self.path_of(artifact_id), "rb") as handle:
                while chunk := handle.read(_READ_CHUNK):
                    hasher.update(chunk)
                    if summer is not None:
                        summer.update(chunk)
        except FileNotFoundError:
            raise self.not_found(artifact_id) from None
        if f"{ALGORITHM}:{hasher.hexdigest()}" != artifact_id:
            return False
        return summer is None or all(summer.text() == checksum for checksum in checksums)

    def ids(self) -> Iterator[str]:
        """Every stored artifact id, in the database and as files."""
        if self._inline is not None:
            yield from self._inline.blob_ids()
        if not self._layout.objects.is_dir():
            return
        for folder in sorted(self._layout.objects.iterdir()):
            if not folder.is_dir() or len(folder.name) != 2:
                continue
            for entry in sorted(folder.iterdir()):
                candidate = f"{ALGORITHM}:{folder.name}{entry.name}"
                if is_content_id(candidate):
                    yield candidate

    def delete(self, artifact_id: str) -> None:
        """Remove an artifact; used by garbage collection only."""
        self._pending.pop(artifact_id, None)
        self._pending_signatures.pop(artifact_id, None)
        if self._inline is not None:
            self._inline.delete_blob(artifact_id)
        if self._signatures is not None:
            self._signatures.delete(artifact_id)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path_of(artifact_id))

    # -- helpers -----------------------------------------------------------------------

    def _small(self, artifact_id: str) -> bytes | None:
        self._file_name(artifact_id)  # validates the id
        pending = self._pending.get(artifact_id)
        if pending is not None:
            return pending
        return self._inline.get_blob(artifact_id) if self._inline is not None else None

    def _remove_stale_temp_files(self) -> None:
        """Delete temp files left by processes that no longer run."""
        if not self._layout.tmp.is_dir():
            return
        for entry in self._layout.tmp.iterdir():
            pid_text = entry.name.split("-", 1)[0]
            if pid_text.isdigit() and _process_alive(int(pid_text)):
                continue
            with contextlib.suppress(OSError):
                entry.unlink()

    @staticmethod
    def not_found(artifact_id: str) -> StorageError:
        """The error for an artifact that is not stored."""
        return StorageError(
            "artifact_not_found",
            f"artifact {artifact_id} is not in the store",
            name=artifact_id,
            hint="it may have been garbage-collected or the .nbflow folder was copied partly",
        )

    @staticmethod
    def corrupt(artifact_id: str) -> ArtifactCorruptError:
        """The error for an artifact whose bytes do not match its id."""
        return ArtifactCorruptError(
            "artifact_corrupt",
            f"artifact {artifact_id} is damaged: its bytes do not match its hash",
            name=artifact_id,
            hint="run `nbflow verify` to list damaged artifacts; resume from an earlier state",
        )


@dataclass
class TempFile:
    """An artifact's bytes written to ``tmp/``, not yet durable nor named."""

    path: Path
    fd: int
    size: int
    _open: bool = True

    def close(self) -> None:
        """Close its descriptor (once)."""
        if self._open:
            self._open = False
            os.close(self.fd)

    def discard(self) -> None:
        """Close and delete it."""
        self.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def write_failure(artifact_id: str, size: int, exc: OSError) -> StorageError:
    """The error for an artifact of ``size`` bytes that could not be written."""
    full = exc.errno == errno.ENOSPC
    return StorageError(
        "disk_full" if full else "artifact_write_failed",
        f"could not write {human_size(size)} ({artifact_id}): {exc.strerror or exc}",
        name=artifact_id,
        hint="free disk space and run it again; everything saved before is intact"
        if full
        else "check the disk and the permissions of the .nbflow folder; everything saved "
        "before is intact",
        details={"bytes": size},
    )


def human_size(size: int) -> str:
    """``512 B``, ``12.3 MB``, ``1.2 GB``."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        if value < 1000 or unit == "TB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
