"""The cache index: which completed attempt a key can be served from (DESIGN §3 "Cache").

A row is written in the same transaction as the ``StateCompleted`` of the attempt it
describes, so the index never names a result that is not durable. It is keyed by the
cache key first, so a lookup is one B-tree descent with no secondary index to go stale,
and every row carries a checksum like the event rows.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass

from nbflow.store.database import Database, row_checksum
from nbflow.store.events import now_us

_COLUMNS = (
    "key, flow_id, state_id, run_id, base_snapshot_id, snapshot_id, outputs, took_ms, bytes,"
    " created_us, used_us, invalidated"
)


@dataclass(frozen=True)
class CacheEntry:
    """A completed attempt that a state with the same key may reuse."""

    key: str
    flow_id: str
    state_id: str
    run_id: str
    base_snapshot_id: str
    """The checkpoint the attempt started from."""
    snapshot_id: str
    """The checkpoint it left."""
    changed: tuple[str, ...]
    """Variables it created or changed (restored on a hit)."""
    deleted: tuple[str, ...]
    """Variables it deleted (deleted on a hit)."""
    files: tuple[tuple[str, str], ...]
    """``(path, artifact id)`` of the ``--outputs`` files it wrote."""
    took_ms: int
    bytes: int
    created_us: int
    used_us: int
    invalidated: bool = False
    cell_outputs: str | None = None
    """Artifact id of the outputs its cell showed (``nbflow run``), when they were kept."""

    def outputs_json(self) -> str:
        """The outputs column."""
        column: dict[str, object] = {
            "changed": self.changed,
            "deleted": self.deleted,
            "files": self.files,
        }
        if self.cell_outputs is not None:
            column["cell"] = self.cell_outputs
        return json.dumps(column, sort_keys=True)

    def row(self) -> tuple[object, ...]:
        """The table row, without its checksum."""
        return (
            self.key,
            self.flow_id,
            self.state_id,
            self.run_id,
            self.base_snapshot_id,
            self.snapshot_id,
            self.outputs_json(),
            self.took_ms,
            self.bytes,
            self.created_us,
            self.used_us,
            int(self.invalidated),
        )


class SqliteCacheIndex:
    """The ``cache`` table."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def insert_in(self, conn: sqlite3.Connection, entry: CacheEntry) -> None:
        """Record ``entry`` inside the caller's transaction (its ``StateCompleted``'s)."""
        row = entry.row()
        conn.execute(
            f"INSERT OR REPLACE INTO cache ({_COLUMNS}, crc)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*row, row_checksum(*row)),
        )

    def find(self, key: str, flow_id: str) -> list[CacheEntry]:
        """The valid entries of ``key`` in ``flow_id``, newest first."""
        with self.database.reading() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS}, crc FROM cache WHERE key = ? AND flow_id = ?"
                " AND invalidated = 0",
                (key, flow_id),
            ).fetchall()
        entries = [entry for entry in map(_entry, rows) if entry is not None]
        return sorted(entries, key=lambda e: e.created_us, reverse=True)

    def touch_in(self, conn: sqlite3.Connection, entry: CacheEntry) -> None:
        """Mark ``entry`` used now (for least-recently-used eviction), in a transaction."""
        self.insert_in(conn, CacheEntry(**{**entry.__dict__, "used_us": now_us()}))

    def entries(self, flow_id: str | None = None) -> list[CacheEntry]:
        """Every intact entry (of ``flow_id``), invalidated ones included."""
        sql = f"SELECT {_COLUMNS}, crc FROM cache"
        params: tuple[object, ...] = ()
        if flow_id is not None:
            sql += " WHERE flow_id = ?"
            params = (flow_id,)
        with self.database.reading() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [entry for entry in map(_entry, rows) if entry is not None]

    def invalidate(self, flow_id: str, state_ids: set[str]) -> int:
        """Never reuse the results computed so far of ``state_ids``; how many rows."""
        count = 0
        with self.database.transaction() as conn:
            for entry in self.entries(flow_id):
                if entry.state_id in state_ids and not entry.invalidated:
                    self.insert_in(conn, CacheEntry(**{**entry.__dict__, "invalidated": True}))
                    count += 1
        return count

    def of_attempt(self, run_id: str, state_id: str) -> CacheEntry | None:
        """The entry recorded by ``state_id``'s completed attempt in ``run_id``, if any."""
        with self.database.reading() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS}, crc FROM cache WHERE run_id = ? AND state_id = ?",
                (run_id, state_id),
            ).fetchall()
        entries = [entry for entry in map(_entry, rows) if entry is not None]
        return max(entries, key=lambda e: e.created_us, default=None)

    def attach_cell_outputs(self, entry: CacheEntry, artifact_id: str) -> None:
        """Remember what ``entry``'s cell showed (an artifact of the cell's outputs)."""
        with self.database.transaction() as conn:
            self.insert_in(conn, CacheEntry(**{**entry.__dict__, "cell_outputs": artifact_id}))

    def delete(self, entries: list[CacheEntry]) -> None:
        """Forget ``entries`` (garbage collection)."""
        with self.database.transaction() as conn:
            conn.executemany(
                "DELETE FROM cache WHERE key = ? AND run_id = ? AND state_id = ?",
                [(e.key, e.run_id, e.state_id) for e in entries],
            )


def _entry(row: tuple[object, ...]) -> CacheEntry | None:
    """The entry of a row; None for a row whose checksum fails (it is never served)."""
    *columns, crc = row
    if row_checksum(*columns) != crc:
        return None
    key, flow, state, run, base, snapshot, outputs, took, size, created, used, invalid = columns
    try:
        parsed = json.loads(str(outputs))
        changed = tuple(parsed["changed"])
        deleted = tuple(parsed["deleted"])
        files = tuple((str(p), str(a)) for p, a in parsed["files"])
        cell = parsed.get("cell")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return CacheEntry(
        str(key),
        str(flow),
        str(state),
        str(run),
        str(base),
        str(snapshot),
        changed,
        deleted,
        files,
        int(str(took)),
        int(str(size)),
        int(str(created)),
        int(str(used)),
        bool(invalid),
        str(cell) if cell is not None else None,
    )
