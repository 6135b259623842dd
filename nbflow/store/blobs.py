"""The ``blobs`` table: small artifacts kept inside ``nbflow.db`` (see :mod:`.artifacts`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from nbflow.store.database import Database


class SqliteBlobs:
    """Small artifacts by id. Their bytes are verified by the artifact store, not here."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def put_blobs(self, rows: Sequence[tuple[str, bytes]]) -> None:
        """Durably store ``(id, bytes)`` rows in their own transaction."""
        if not rows:
            return
        with self.database.transaction() as conn:
            self.insert_in(conn, rows)

    @staticmethod
    def insert_in(conn: sqlite3.Connection, rows: Sequence[tuple[str, bytes]]) -> None:
        """Insert ``rows`` inside the caller's transaction."""
        conn.executemany("INSERT OR IGNORE INTO blobs (id, data) VALUES (?, ?)", rows)

    def get_blob(self, blob_id: str) -> bytes | None:
        """The stored bytes of ``blob_id`` (unverified), or None."""
        with self.database.reading() as conn:
            row = conn.execute("SELECT data FROM blobs WHERE id = ?", (blob_id,)).fetchone()
        return bytes(row[0]) if row else None

    def get_blobs(self, blob_ids: Sequence[str]) -> dict[str, bytes]:
        """The stored bytes (unverified) of those of ``blob_ids`` that are stored, in one
        query per 500 ids."""
        with self.database.reading() as conn:
            return {row[0]: bytes(row[1]) for row in _rows_of(conn, "id, data", blob_ids)}

    def has_blob(self, blob_id: str) -> bool:
        """Whether ``blob_id`` is stored."""
        with self.database.reading() as conn:
            row = conn.execute("SELECT 1 FROM blobs WHERE id = ?", (blob_id,)).fetchone()
        return row is not None

    def stored_of(self, blob_ids: Sequence[str]) -> set[str]:
        """Which of ``blob_ids`` are stored, in one query per 500 ids."""
        with self.database.reading() as conn:
            return {row[0] for row in _rows_of(conn, "id", blob_ids)}

    def blob_size(self, blob_id: str) -> int | None:
        """Length of ``blob_id`` in bytes, or None."""
        with self.database.reading() as conn:
            row = conn.execute("SELECT length(data) FROM blobs WHERE id = ?", (blob_id,)).fetchone()
        return int(row[0]) if row else None

    def blob_ids(self) -> list[str]:
        """Every stored blob id."""
        with self.database.reading() as conn:
            rows = conn.execute("SELECT id FROM blobs ORDER BY id").fetchall()
        return [row[0] for row in rows]

    def delete_blob(self, blob_id: str) -> None:
        """Remove ``blob_id``; used by garbage collection only."""
        with self.database.transaction() as conn:
            conn.execute("DELETE FROM blobs WHERE id = ?", (blob_id,))


_IDS_PER_QUERY = 500
"""Well under SQLite's limit on the parameters of one statement."""


def _rows_of(conn: sqlite3.Connection, columns: str, blob_ids: Sequence[str]) -> Iterator[Any]:
    """``columns`` of the rows of those of ``blob_ids`` that are stored."""
    for start in range(0, len(blob_ids), _IDS_PER_QUERY):
        chunk = blob_ids[start : start + _IDS_PER_QUERY]
        marks = ",".join("?" * len(chunk))
        yield from conn.execute(f"SELECT {columns} FROM blobs WHERE id IN ({marks})", chunk)
