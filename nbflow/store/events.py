"""The event store: an append-only stream of events per run, and an index of runs.

All SQL lives in :class:`SqliteEventStore`. An append names the sequence number it expects
to follow; the check and the insert happen in one ``BEGIN IMMEDIATE`` transaction, so of two
writers appending at the same number exactly one succeeds. The runs index is updated in the
same transaction, so listing runs never scans events.
"""

from __future__ import annotations

import abc
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from nbflow.errors import SequenceConflictError, StorageError
from nbflow.model.events import (
    Event,
    EventEnvelope,
    RunCompleted,
    RunStarted,
    StateEntered,
)
from nbflow.store.layout import FILE_MODE

APPLICATION_ID = 0x6E62666C  # "nbfl": marks the database as nbflow's
SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 10_000
WAL_PREALLOCATE_BYTES = 4 * 1024 * 1024
"""The WAL is grown to this size when the database is opened, and then reused: a
commit that overwrites WAL frames in place syncs only data, while one that extends the
file must also sync its size. Measured here: about 0.4 ms against 0.15-0.2 ms per commit.
SQLite's default auto-checkpoint (1000 pages) keeps the WAL within this size."""
RUNNING = "running"

_EVENT = TypeAdapter(Event)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_us INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    flow_id TEXT,
    manifest_id TEXT,
    status TEXT NOT NULL,
    started_us INTEGER NOT NULL,
    finished_us INTEGER,
    updated_us INTEGER NOT NULL,
    head_seq INTEGER NOT NULL,
    last_state TEXT
);
CREATE TABLE IF NOT EXISTS blobs (
    id TEXT PRIMARY KEY,
    data BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_us DESC);
CREATE INDEX IF NOT EXISTS runs_by_flow ON runs (flow_id, started_us DESC);
"""


@dataclass(frozen=True)
class RunRecord:
    """One row of the runs index."""

    run_id: str
    flow_id: str | None
    manifest_id: str | None
    status: str
    """``running`` until a ``RunCompleted`` is appended, then its status."""
    started_us: int
    finished_us: int | None
    updated_us: int
    head_seq: int
    last_state: str | None
    """The state of the most recent ``StateEntered``."""


def now_us() -> int:
    """Wall-clock time in integer microseconds."""
    return time.time_ns() // 1000


class EventStore(abc.ABC):
    """Append-only event streams keyed by run id."""

    @abc.abstractmethod
    def append(
        self, run_id: str, expected_seq: int, events: Sequence[Event]
    ) -> list[EventEnvelope]:
        """Append ``events`` after sequence number ``expected_seq``.

        Raises :class:`SequenceConflictError` (code ``sequence_conflict``) when the stream's
        head is not ``expected_seq``: another writer got there first. Returns the envelopes
        once they are durable.
        """

    @abc.abstractmethod
    def head_seq(self, run_id: str) -> int:
        """The sequence number of the run's last event; 0 when the run has none."""

    @abc.abstractmethod
    def read_range(
        self, run_id: str, start: int = 1, end: int | None = None
    ) -> list[EventEnvelope]:
        """Events with ``start <= seq <= end`` (``end`` None: to the head), in order."""

    @abc.abstractmethod
    def runs(self, flow_id: str | None = None, limit: int | None = None) -> list[RunRecord]:
        """Runs, newest first, optionally of one flow only."""

    @abc.abstractmethod
    def run(self, run_id: str) -> RunRecord | None:
        """The index row of ``run_id``, or None."""

    @abc.abstractmethod
    def find_runs(self, prefix: str) -> list[str]:
        """Run ids that start with ``prefix``."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection."""


class SqliteEventStore(EventStore):
    """:class:`EventStore` on one SQLite file in WAL mode with ``synchronous=FULL``."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.RLock()
        self._conn = self._connect(path)
        self._before_commit: Callable[[], list[tuple[str, bytes]]] = list
        self._after_commit: Callable[[list[str]], None] = _ignore

    def set_commit_hooks(
        self,
        before: Callable[[], list[tuple[str, bytes]]],
        after: Callable[[list[str]], None],
    ) -> None:
        """Let the artifact store commit small blobs in the same transaction as events.

        ``before`` runs inside the append transaction and returns ``(id, bytes)`` rows to
        insert; ``after`` gets their ids once the transaction has committed.
        """
        self._before_commit = before
        self._after_commit = after

    # -- connection --------------------------------------------------------------------

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
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
        except sqlite3.DatabaseError as exc:
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
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise StorageError("store_wal_unavailable", f"cannot enable WAL on {path}")
        conn.execute("PRAGMA synchronous=FULL")
        if not tables:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        # SQLite removes the WAL when its last connection closes: grow it on every open.
        wal = path.with_name(path.name + "-wal")
        if not wal.exists() or wal.stat().st_size < WAL_PREALLOCATE_BYTES // 2:
            _preallocate_wal(conn)
        return conn

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise self._storage_failure(exc) from exc
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._conn.execute("ROLLBACK")
                raise self._storage_failure(exc) from exc

    def _storage_failure(self, exc: sqlite3.Error) -> StorageError:
        return StorageError(
            "store_write_failed",
            f"could not write to {self._path}: {exc}",
            name=str(self._path),
            hint="check free disk space and that no other program holds the database locked",
        )

    def pragmas(self) -> dict[str, object]:
        """The durability settings in force on this connection."""
        with self._lock:
            mode = self._conn.execute("PRAGMA journal_mode").fetchone()[0]
            synchronous = self._conn.execute("PRAGMA synchronous").fetchone()[0]
        return {"journal_mode": mode, "synchronous": synchronous}

    # -- EventStore --------------------------------------------------------------------

    def append(
        self, run_id: str, expected_seq: int, events: Sequence[Event]
    ) -> list[EventEnvelope]:
        if not events:
            return []
        at_us = now_us()
        envelopes = [
            EventEnvelope(run_id=run_id, seq=expected_seq + i + 1, at_us=at_us, event=event)
            for i, event in enumerate(events)
        ]
        rows = [
            (run_id, env.seq, env.at_us, env.event.kind, env.model_dump_json()) for env in envelopes
        ]
        head = envelopes[-1].seq
        with self._immediate() as conn:
            found = conn.execute("SELECT head_seq FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            current = found[0] if found else 0
            if current != expected_seq:
                raise SequenceConflictError(
                    "sequence_conflict",
                    f"run {run_id} is at event {current}, not {expected_seq}: "
                    "another writer appended first",
                    name=run_id,
                    hint="another kernel or process is running this run; stop it or wait",
                    details={"expected_seq": expected_seq, "head_seq": current},
                )
            try:
                conn.executemany(
                    "INSERT INTO events (run_id, seq, at_us, kind, body) VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
            except sqlite3.IntegrityError as exc:
                raise SequenceConflictError(
                    "sequence_conflict",
                    f"run {run_id} already has events after {expected_seq}",
                    name=run_id,
                ) from exc
            self._update_index(conn, run_id, found is None, envelopes, head)
            blob_rows = self._before_commit()
            if blob_rows:
                conn.executemany("INSERT OR IGNORE INTO blobs (id, data) VALUES (?, ?)", blob_rows)
        if blob_rows:
            self._after_commit([row[0] for row in blob_rows])
        return envelopes

    @staticmethod
    def _update_index(
        conn: sqlite3.Connection,
        run_id: str,
        is_new: bool,
        envelopes: list[EventEnvelope],
        head: int,
    ) -> None:
        at_us = envelopes[-1].at_us
        if is_new:
            started = next((e.event for e in envelopes if isinstance(e.event, RunStarted)), None)
            conn.execute(
                "INSERT INTO runs (run_id, flow_id, manifest_id, status, started_us,"
                " updated_us, head_seq) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    started.op_id if started else None,
                    started.manifest_id if started else None,
                    RUNNING,
                    at_us,
                    at_us,
                    head,
                ),
            )
        status: str | None = None
        last_state: str | None = None
        for env in envelopes:
            if isinstance(env.event, RunCompleted):
                status = env.event.status.value
            elif isinstance(env.event, StateEntered):
                last_state = env.event.state_id
        conn.execute(
            "UPDATE runs SET head_seq = ?, updated_us = ?,"
            " last_state = COALESCE(?, last_state),"
            " status = COALESCE(?, status),"
            " finished_us = CASE WHEN ? IS NULL THEN finished_us ELSE ? END"
            " WHERE run_id = ?",
            (head, at_us, last_state, status, status, at_us, run_id),
        )

    def head_seq(self, run_id: str) -> int:
        with self._lock:
            row = self._conn.execute(
                "SELECT head_seq FROM runs WHERE run_id = ?", (run_id,)
            ).fetchone()
        return int(row[0]) if row else 0

    def read_range(
        self, run_id: str, start: int = 1, end: int | None = None
    ) -> list[EventEnvelope]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, body FROM events WHERE run_id = ? AND seq >= ? AND seq <= ?"
                " ORDER BY seq",
                (run_id, start, end if end is not None else 2**62),
            ).fetchall()
        envelopes: list[EventEnvelope] = []
        for seq, body in rows:
            try:
                envelope = EventEnvelope.model_validate_json(body)
            except ValidationError as exc:
                raise StorageError(
                    "event_undecodable",
                    f"event {seq} of run {run_id} cannot be decoded",
                    name=run_id,
                    hint="the database was changed by another program; nothing was modified",
                    details={"seq": seq, "errors": exc.error_count()},
                ) from exc
            envelopes.append(envelope)
        return envelopes

    def runs(self, flow_id: str | None = None, limit: int | None = None) -> list[RunRecord]:
        sql = (
            "SELECT run_id, flow_id, manifest_id, status, started_us, finished_us,"
            " updated_us, head_seq, last_state FROM runs"
        )
        params: list[object] = []
        if flow_id is not None:
            sql += " WHERE flow_id = ?"
            params.append(flow_id)
        sql += " ORDER BY started_us DESC, run_id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self._lock:
            rows = self._conn.execute(sql, params).fetchall()
        return [RunRecord(*row) for row in rows]

    def run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT run_id, flow_id, manifest_id, status, started_us, finished_us,"
                " updated_us, head_seq, last_state FROM runs WHERE run_id = ?",
                (run_id,),
            ).fetchone()
        return RunRecord(*row) if row else None

    def find_runs(self, prefix: str) -> list[str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._lock:
            rows = self._conn.execute(
                "SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' ORDER BY run_id",
                (escaped + "%",),
            ).fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- small artifacts (see ArtifactStore) -------------------------------------------

    def put_blobs(self, rows: Sequence[tuple[str, bytes]]) -> None:
        """Durably store ``(id, bytes)`` rows in their own transaction."""
        if not rows:
            return
        with self._immediate() as conn:
            conn.executemany("INSERT OR IGNORE INTO blobs (id, data) VALUES (?, ?)", rows)

    def get_blob(self, blob_id: str) -> bytes | None:
        """The stored bytes of ``blob_id`` (unverified), or None."""
        with self._lock:
            row = self._conn.execute("SELECT data FROM blobs WHERE id = ?", (blob_id,)).fetchone()
        return bytes(row[0]) if row else None

    def has_blob(self, blob_id: str) -> bool:
        """Whether ``blob_id`` is stored."""
        with self._lock:
            row = self._conn.execute("SELECT 1 FROM blobs WHERE id = ?", (blob_id,)).fetchone()
        return row is not None

    def blob_size(self, blob_id: str) -> int | None:
        """Length of ``blob_id`` in bytes, or None."""
        with self._lock:
            row = self._conn.execute(
                "SELECT length(data) FROM blobs WHERE id = ?", (blob_id,)
            ).fetchone()
        return int(row[0]) if row else None

    def blob_ids(self) -> list[str]:
        """Every stored blob id."""
        with self._lock:
            rows = self._conn.execute("SELECT id FROM blobs ORDER BY id").fetchall()
        return [row[0] for row in rows]

    def delete_blob(self, blob_id: str) -> None:
        """Remove ``blob_id``; used by garbage collection only."""
        with self._immediate() as conn:
            conn.execute("DELETE FROM blobs WHERE id = ?", (blob_id,))


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
    finally:
        conn.execute(f"PRAGMA cache_size={int(cache_size)}")


def _ignore(_ids: list[str]) -> None:
    return None
