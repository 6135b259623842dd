"""``nbflow.db``: opening it safely, its schema and migrations, and its transactions.

The tables (events and runs, blobs, signatures, leases) each have a class of their own
that holds their SQL; they share one :class:`Database`, which owns the connection, the
lock around it, and the mapping of SQLite's errors to :class:`StorageError` with a stable
code, so that a full disk or a damaged page is one clear line, never a traceback.

Durability: WAL with ``synchronous=FULL`` and ``BEGIN IMMEDIATE``; the WAL is grown once
on open and then reused (see docs/decisions.md). On a network or FUSE filesystem, where
WAL's shared memory is unsafe, a rollback journal is used instead (:mod:`.filesystems`).

Integrity: every row of ``events``, ``runs`` and ``leases`` carries a checksum of its
columns (:func:`row_checksum`) that readers verify, because SQLite does not checksum
pages: a flipped byte inside an event's JSON would otherwise be read as a different,
valid event.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import xxhash

from nbflow.errors import StorageError
from nbflow.store import faults
from nbflow.store.filesystems import Mount, mount_of
from nbflow.store.layout import FILE_MODE

APPLICATION_ID = 0x6E62666C  # "nbfl": marks the database as nbflow's
SCHEMA_VERSION = 2
"""1: events, runs, blobs. 2: row checksums, signatures, leases, the cache index."""
BUSY_TIMEOUT_MS = 10_000
WAL_PREALLOCATE_BYTES = 4 * 1024 * 1024
"""The WAL is grown to this size when the database is opened, and then reused: a
commit that overwrites WAL frames in place syncs only data, while one that extends the
file must also sync its size. Measured here: about 0.4 ms against 0.15-0.2 ms per commit.
SQLite's default auto-checkpoint (1000 pages) keeps the WAL within this size."""

_TABLES = """
CREATE TABLE events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    crc INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE runs (
    run_id TEXT PRIMARY KEY,
    flow_id TEXT,
    manifest_id TEXT,
    status TEXT NOT NULL,
    started_us INTEGER NOT NULL,
    finished_us INTEGER,
    updated_us INTEGER NOT NULL,
    head_seq INTEGER NOT NULL,
    last_state TEXT,
    crc INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE blobs (
    id TEXT PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX runs_by_start ON runs (started_us DESC);
CREATE INDEX runs_by_flow ON runs (flow_id, started_us DESC);
"""
_VERSION_2 = """
CREATE TABLE signatures (
    artifact_id TEXT NOT NULL,
    key_id TEXT NOT NULL,
    mac TEXT NOT NULL,
    PRIMARY KEY (artifact_id, key_id)
) WITHOUT ROWID;
CREATE TABLE leases (
    run_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    renewed_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    crc INTEGER NOT NULL
);
CREATE TABLE cache (
    key TEXT NOT NULL,
    flow_id TEXT NOT NULL,
    state_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    base_snapshot_id TEXT NOT NULL,
    snapshot_id TEXT NOT NULL,
    outputs TEXT NOT NULL,
    took_ms INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    created_us INTEGER NOT NULL,
    used_us INTEGER NOT NULL,
    invalidated INTEGER NOT NULL DEFAULT 0,
    crc INTEGER NOT NULL,
    PRIMARY KEY (key, run_id, state_id)
) WITHOUT ROWID;
CREATE TABLE file_digests (
    path TEXT PRIMARY KEY,
    stat TEXT NOT NULL,
    digest TEXT NOT NULL
) WITHOUT ROWID;
"""
_V1_TO_V2 = """
ALTER TABLE events ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN crc INTEGER NOT NULL DEFAULT 0;
"""

INDEXED_TABLES = ("runs", "leases")
"""Tables read through secondary indexes (the others are keyed by their rows alone)."""

Hook = Callable[[sqlite3.Connection], None]
# SQLite's primary result codes (the sqlite3 module names them from Python 3.11 only).
_SQLITE_BUSY, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 11, 13, 26


def row_checksum(*columns: object) -> int:
    """A checksum of a row's columns, as a signed 64-bit SQLite integer."""
    text = "\x1f".join("\x00" if c is None else str(c) for c in columns)
    value = xxhash.xxh3_64_intdigest(text.encode("utf-8", "surrogatepass"))
    return value - (1 << 64) if value >= 1 << 63 else value


class Database:
    """One connection to ``nbflow.db``, shared by the table classes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.network_mount: Mount | None = None
        """The network or FUSE mount the database is on, if it is (rollback journal)."""
        self.migrated_from: int | None = None
        """The schema version this open migrated from, if it migrated."""
        self.repaired: list[str] = []
        """Damage to indexes found on open and repaired by rebuilding them."""
        self._pre_commit: list[Hook] = []
        self._post_commit: list[Callable[[], None]] = []
        self.closed = False
        self.conn = self._connect()

    def add_commit_hooks(self, before: Hook, after: Callable[[], None]) -> None:
        """Run ``before`` inside every :meth:`transaction` marked ``carry``, just before
        its commit (to add held-back rows), and ``after`` once it has committed."""
        self._pre_commit.append(before)
        self._post_commit.append(after)

    # -- opening ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        path = self.path
        if not path.exists():
            # Created here with 0600 so that SQLite's -wal and -shm files inherit the mode.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)
            os.close(fd)
        try:
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
            )
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise StorageError(
                "store_unreadable",
                f"{path} is not a readable SQLite database: {exc}",
                name=str(path),
                hint="move the damaged file away; nbflow will start a new history",
            ) from exc
        if tables and app_id != APPLICATION_ID:
            conn.close()
            raise StorageError(
                "store_foreign",
                f"{path} is a SQLite database that nbflow did not create",
                name=str(path),
                hint="move it away or set NBFLOW_HOME to another folder; it was not changed",
            )
        if version > SCHEMA_VERSION:
            conn.close()
            raise StorageError(
                "store_schema_unsupported",
                f"{path} has schema version {version}; this nbflow reads up to {SCHEMA_VERSION}",
                name=str(path),
                hint="upgrade nbflow",
            )
        try:
            self._set_journal(conn)
            if not tables:
                self._create(conn)
            elif version < SCHEMA_VERSION:
                self._migrate(conn, version)
            else:
                self._check_indexes(conn)
        except (sqlite3.Error, UnicodeDecodeError) as exc:
            conn.close()
            raise self.failure(exc, "open") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _check_indexes(self, conn: sqlite3.Connection) -> None:
        """Check the tables whose lookups go through secondary indexes, on every open.

        Row checksums catch a damaged row, but not a damaged *index* entry, which hides a
        row from lookups (a run missing from the list, an unfinished run not found). The
        indexes hold only what the rows hold, so a damage that touches only them is
        repaired by rebuilding them; anything else is ``store_corrupt``. About 14 ms for
        10,000 runs.
        """
        problems = [
            row[0]
            for table in INDEXED_TABLES
            for row in conn.execute(f"PRAGMA integrity_check({table})").fetchall()
            if row[0] != "ok"
        ]
        if not problems:
            return
        if all(_index_only(problem) for problem in problems):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for table in INDEXED_TABLES:
                    conn.execute(f"REINDEX {table}")
                missing = conn.execute(
                    "SELECT count(*) FROM (SELECT DISTINCT run_id FROM events)"
                    " WHERE run_id NOT IN (SELECT run_id FROM runs)"
                ).fetchone()[0]
                if missing:
                    raise sqlite3.DatabaseError(f"{missing} runs are missing from the runs table")
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            self.repaired = problems
            return
        raise sqlite3.DatabaseError("database disk image is malformed: " + "; ".join(problems[:3]))

    def _set_journal(self, conn: sqlite3.Connection) -> None:
        mount = mount_of(self.path.parent)
        if mount is not None and mount.is_network:
            self.network_mount = mount
            conn.execute("PRAGMA journal_mode=DELETE")
        else:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StorageError("store_wal_unavailable", f"cannot enable WAL on {self.path}")
        conn.execute("PRAGMA synchronous=FULL")
        if self.network_mount is None:
            # SQLite removes the WAL when its last connection closes: grow it on every open.
            wal = self.path.with_name(self.path.name + "-wal")
            if not wal.exists() or wal.stat().st_size < WAL_PREALLOCATE_BYTES // 2:
                _preallocate_wal(conn)

    @staticmethod
    def _create(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in (_TABLES + _VERSION_2).split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _migrate(self, conn: sqlite3.Connection, version: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated it while this one waited for the lock.
            if conn.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
                for statement in (_V1_TO_V2 + _VERSION_2).split(";"):
                    if statement.strip():
                        conn.execute(statement)
                for row in conn.execute("SELECT run_id, seq, at_us, kind, body FROM events"):
                    conn.execute(
                        "UPDATE events SET crc = ? WHERE run_id = ? AND seq = ?",
                        (row_checksum(*row), row[0], row[1]),
                    )
                columns = "run_id, flow_id, manifest_id, status, started_us, finished_us,"
                columns += " updated_us, head_seq, last_state"
                for row in conn.execute(f"SELECT {columns} FROM runs").fetchall():
                    conn.execute(
                        "UPDATE runs SET crc = ? WHERE run_id = ?", (row_checksum(*row), row[0])
                    )
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self.migrated_from = version
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- using -----------------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, carry: bool = False) -> Iterator[sqlite3.Connection]:
        """A ``BEGIN IMMEDIATE`` write transaction; ``carry``: commit the rows other
        stores held back (small artifacts, signatures) with it."""
        with self.lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self.failure(exc, "write") from exc
            try:
                yield conn
                if carry:
                    for hook in self._pre_commit:
                        hook(conn)
                faults.hit("event.commit")
                conn.execute("COMMIT")
            except BaseException as exc:
                _rollback(conn)
                if isinstance(exc, (sqlite3.Error, OSError, UnicodeDecodeError)):
                    raise self.failure(exc, "write") from exc
                raise
        faults.hit("event.committed")
        if carry:
            for after in self._post_commit:
                after()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for reads; SQLite's errors become :class:`StorageError`."""
        with self.lock:
            try:
                yield self.conn
            except (sqlite3.Error, UnicodeDecodeError) as exc:
                # Text that is not UTF-8 any more is damage too: SQLite stores what it got.
                raise self.failure(exc, "read") from exc

    def checkpoint(self) -> None:
        """Copy the WAL into the database file (done when the history is closed)."""
        if self.network_mount is not None:
            return
        with self.lock:
            try:
                faults.hit("wal.checkpoint")
                self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            except (sqlite3.Error, OSError) as exc:
                raise self.failure(exc, "checkpoint") from exc

    def close(self) -> None:
        """Checkpoint the WAL and close the connection (the WAL then holds nothing)."""
        if self.closed:
            return
        try:
            self.checkpoint()
        finally:
            with self.lock:
                self.closed = True
                self.conn.close()

    def pragmas(self) -> dict[str, object]:
        """The durability settings in force on this connection."""
        with self.reading() as conn:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
        return {"journal_mode": mode, "synchronous": synchronous}

    def failure(self, exc: BaseException, doing: str) -> StorageError:
        """``exc`` from SQLite (or an injected fault) as one clear :class:`StorageError`."""
        if isinstance(exc, StorageError):
            return exc
        text = str(exc) or type(exc).__name__
        code = getattr(exc, "sqlite_errorcode", None)
        primary = code & 0xFF if isinstance(code, int) else None
        errno_code = getattr(exc, "errno", None)
        if primary == _SQLITE_FULL or errno_code == 28 or "disk is full" in text:
            return StorageError(
                "disk_full",
                f"could not {doing} {self.path}: the disk is full",
                name=str(self.path),
                hint="free some space (nbflow gc removes artifacts no run refers to) and run "
                "the cell again; everything saved before is intact",
            )
        if (
            primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
            or isinstance(exc, UnicodeDecodeError)
            or "malformed" in text
            or ("not a database" in text)
        ):
            return StorageError(
                "store_corrupt",
                f"the history database {self.path} is damaged: {text}",
                name=str(self.path),
                hint="nothing was changed; copy the .nbflow folder aside and start a new "
                "history, or restore the folder from a backup",
            )
        if primary == _SQLITE_BUSY or "locked" in text:
            return StorageError(
                "store_busy",
                f"could not {doing} {self.path}: another process holds it locked ({text})",
                name=str(self.path),
                hint="wait for the other kernel or nbflow command to finish",
                retryable=True,
            )
        return StorageError(
            "store_write_failed" if doing != "read" else "store_read_failed",
            f"could not {doing} {self.path}: {text}",
            name=str(self.path),
            hint="check the disk and the permissions of the .nbflow folder; everything "
            "saved before is intact",
        )


def _index_only(problem: str) -> bool:
    """Whether an integrity_check message is about an index entry, not a row or a page."""
    return "missing from index" in problem or "wrong # of entries in index" in problem


def _rollback(conn: sqlite3.Connection) -> None:
    # SQLite may have rolled back by itself (a full disk does that): nothing is pending then.
    with contextlib.suppress(sqlite3.Error):
        conn.execute("ROLLBACK")


def _preallocate_wal(conn: sqlite3.Connection) -> None:
    """Grow the WAL once: a transaction too big for a tiny page cache spills its pages
    into the WAL and is rolled back, so the file grows and the database does not."""
    cache_size = conn.execute("PRAGMA cache_size").fetchone()[0]
    conn.execute("PRAGMA cache_size=-64")
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("CREATE TABLE _nbflow_grow (b BLOB)")
            conn.execute("INSERT INTO _nbflow_grow VALUES (zeroblob(?))", (WAL_PREALLOCATE_BYTES,))
        finally:
            conn.execute("ROLLBACK")
    except sqlite3.OperationalError:
        pass  # a full disk: the WAL stays small, which is slower, never wrong
    finally:
        conn.execute(f"PRAGMA cache_size={int(cache_size)}")
