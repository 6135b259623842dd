"""The event store: an append-only stream of events per run, and an index of runs.

All SQL lives in :class:`SqliteEventStore`. An append names the sequence number it expects
to follow; the check and the insert happen in one ``BEGIN IMMEDIATE`` transaction, so of two
writers appending at the same number exactly one succeeds. The runs index is updated in the
same transaction, so listing runs never scans events.
"""

from __future__ import annotations

import abc
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from pydantic import ValidationError

from nbflow.errors import NbflowError, SequenceConflictError, StorageError
from nbflow.model.events import (
    Event,
    EventEnvelope,
    RunCompleted,
    RunStarted,
    StateEntered,
)
from nbflow.store.database import Database, row_checksum

RUNNING = "running"

Within = Callable[[sqlite3.Connection], None]
"""More writes to make in an append's transaction."""

_RUN_COLUMNS = (
    "run_id, flow_id, manifest_id, status, started_us, finished_us, updated_us, head_seq,"
    " last_state"
)


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
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[Event],
        *,
        within: Within | None = None,
    ) -> list[EventEnvelope]:
        """Append ``events`` after sequence number ``expected_seq``; ``within`` runs in the
        same transaction (a lease taken or given up with the events).

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
    def runs(
        self,
        flow_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        status: str | None = None,
    ) -> list[RunRecord]:
        """Runs, newest first, optionally of one flow (and one status) only; the first
        ``offset`` are passed over."""

    @abc.abstractmethod
    def count_runs(self, flow_id: str | None = None) -> int:
        """How many runs there are (of one flow)."""

    @abc.abstractmethod
    def run(self, run_id: str) -> RunRecord | None:
        """The index row of ``run_id``, or None."""

    @abc.abstractmethod
    def find_runs(self, prefix: str) -> list[str]:
        """Run ids that start with ``prefix``."""

    def run_named(self, prefix: str) -> str:
        """The one run id that starts with ``prefix``; ``run_not_found`` when none does,
        ``run_ambiguous`` when several do."""
        matches = self.find_runs(prefix)
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise StorageError("run_not_found", f"no run id starts with {prefix!r}", name=prefix)
        raise NbflowError(
            "run_ambiguous",
            f"{len(matches)} runs start with {prefix!r}",
            name=prefix,
            hint="type more characters of the run id",
        )

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connection."""


class SqliteEventStore(EventStore):
    """:class:`EventStore` on the ``events`` and ``runs`` tables of a :class:`Database`.

    Every row carries a checksum of its columns; a row whose checksum does not match, a
    gap in a stream, or a stream shorter than its index says are reported as
    ``store_corrupt`` before any of it is used.
    """

    def __init__(self, database: Database) -> None:
        self.database = database

    def pragmas(self) -> dict[str, object]:
        """The durability settings in force on this connection."""
        return self.database.pragmas()

    # -- EventStore --------------------------------------------------------------------

    def append(
        self,
        run_id: str,
        expected_seq: int,
        events: Sequence[Event],
        *,
        within: Within | None = None,
    ) -> list[EventEnvelope]:
        if not events:
            return []
        at_us = now_us()
        envelopes = [
            EventEnvelope(run_id=run_id, seq=expected_seq + i + 1, at_us=at_us, event=event)
            for i, event in enumerate(events)
        ]
        with self.database.transaction(carry=True) as conn:
            self.append_in(conn, run_id, expected_seq, envelopes)
            if within is not None:
                within(conn)
        return envelopes

    def append_in(
        self,
        conn: sqlite3.Connection,
        run_id: str,
        expected_seq: int,
        envelopes: list[EventEnvelope],
    ) -> None:
        """Append ``envelopes`` inside the caller's transaction, checking the head first."""
        found = self.run_in(conn, run_id)
        current = found.head_seq if found else 0
        if current != expected_seq:
            raise SequenceConflictError(
                "sequence_conflict",
                f"run {run_id} is at event {current}, not {expected_seq}: "
                "another writer appended first",
                name=run_id,
                hint="another kernel or process is running this run; stop it or wait",
                details={"expected_seq": expected_seq, "head_seq": current},
            )
        rows = []
        for env in envelopes:
            body = env.model_dump_json()
            kind = env.event.kind
            rows.append((run_id, env.seq, env.at_us, kind, body, _event_checksum(env, body)))
        try:
            conn.executemany(
                "INSERT INTO events (run_id, seq, at_us, kind, body, crc)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
        except sqlite3.IntegrityError as exc:
            raise SequenceConflictError(
                "sequence_conflict",
                f"run {run_id} already has events after {expected_seq}",
                name=run_id,
            ) from exc
        self._update_index(conn, found, run_id, envelopes)

    def run_in(self, conn: sqlite3.Connection, run_id: str) -> RunRecord | None:
        """The index row of ``run_id`` inside the caller's transaction, checked."""
        row = conn.execute(
            f"SELECT {_RUN_COLUMNS}, crc FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        return self._checked_record(row) if row else None

    def _checked_record(self, row: tuple[object, ...]) -> RunRecord:
        *columns, crc = row
        if row_checksum(*columns) != crc:
            raise self._corrupt(f"the index row of run {columns[0]} is damaged", columns[0])
        return RunRecord(*columns)  # type: ignore[arg-type]

    @staticmethod
    def _update_index(
        conn: sqlite3.Connection,
        found: RunRecord | None,
        run_id: str,
        envelopes: list[EventEnvelope],
    ) -> None:
        at_us = envelopes[-1].at_us
        record = found
        if record is None:
            started = next((e.event for e in envelopes if isinstance(e.event, RunStarted)), None)
            record = RunRecord(
                run_id=run_id,
                flow_id=started.op_id if started else None,
                manifest_id=started.manifest_id if started else None,
                status=RUNNING,
                started_us=at_us,
                finished_us=None,
                updated_us=at_us,
                head_seq=0,
                last_state=None,
            )
        for env in envelopes:
            if isinstance(env.event, RunCompleted):
                record = replace(record, status=env.event.status.value, finished_us=at_us)
            elif isinstance(env.event, StateEntered):
                record = replace(record, last_state=env.event.state_id)
        record = replace(record, head_seq=envelopes[-1].seq, updated_us=at_us)
        columns = (
            record.run_id,
            record.flow_id,
            record.manifest_id,
            record.status,
            record.started_us,
            record.finished_us,
            record.updated_us,
            record.head_seq,
            record.last_state,
        )
        crc = row_checksum(*columns)
        if found is None:
            conn.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}, crc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*columns, crc),
            )
            return
        # An UPDATE of columns no index covers leaves the indexes' pages alone: fewer
        # pages in each commit than a replace of the row.
        conn.execute(
            "UPDATE runs SET status = ?, finished_us = ?, updated_us = ?, head_seq = ?,"
            " last_state = ?, crc = ? WHERE run_id = ?",
            (
                record.status,
                record.finished_us,
                record.updated_us,
                record.head_seq,
                record.last_state,
                crc,
                run_id,
            ),
        )

    def head_seq(self, run_id: str) -> int:
        record = self.run(run_id)
        return record.head_seq if record else 0

    def read_range(
        self, run_id: str, start: int = 1, end: int | None = None
    ) -> list[EventEnvelope]:
        with self.database.reading() as conn:
            record = self.run_in(conn, run_id)
            head = record.head_seq if record else 0
            last = head if end is None else min(end, head)
            # Bounded by the head just read: a writer may append between the two reads,
            # and events past that head are not part of what the index row describes.
            rows = conn.execute(
                "SELECT seq, at_us, kind, body, crc FROM events"
                " WHERE run_id = ? AND seq >= ? AND seq <= ? ORDER BY seq",
                (run_id, start, last),
            ).fetchall()
        expected = list(range(start, last + 1))
        if [row[0] for row in rows] != expected:
            raise self._corrupt(
                f"the events of run {run_id} do not match its index "
                f"(found {len(rows)} of events {start}-{last})",
                run_id,
            )
        envelopes: list[EventEnvelope] = []
        for seq, at_us, kind, body, crc in rows:
            if row_checksum(run_id, seq, at_us, kind, body) != crc:
                raise self._corrupt(f"event {seq} of run {run_id} is damaged", run_id)
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

    def runs(
        self,
        flow_id: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        status: str | None = None,
    ) -> list[RunRecord]:
        sql = f"SELECT {_RUN_COLUMNS}, crc FROM runs"
        where, params = _run_filter(flow_id, status)
        sql += where + " ORDER BY started_us DESC, run_id"
        if limit is not None or offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if limit is None else limit, offset]
        with self.database.reading() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [self._checked_record(row) for row in rows]

    def count_runs(self, flow_id: str | None = None) -> int:
        where, params = _run_filter(flow_id, None)
        with self.database.reading() as conn:
            return int(conn.execute(f"SELECT count(*) FROM runs{where}", params).fetchone()[0])

    def run(self, run_id: str) -> RunRecord | None:
        with self.database.reading() as conn:
            return self.run_in(conn, run_id)

    def find_runs(self, prefix: str) -> list[str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self.database.reading() as conn:
            rows = conn.execute(
                "SELECT run_id FROM runs WHERE run_id LIKE ? ESCAPE '\\' ORDER BY run_id",
                (escaped + "%",),
            ).fetchall()
        return [row[0] for row in rows]

    def close(self) -> None:
        self.database.close()

    def _corrupt(self, message: str, run_id: object) -> StorageError:
        return StorageError(
            "store_corrupt",
            f"{message}; nothing of it was used",
            name=str(run_id),
            hint=f"the history in {self.database.path.parent} is damaged; `nbflow verify` "
            "checks it. Other runs are unaffected",
        )


def _run_filter(flow_id: str | None, status: str | None) -> tuple[str, list[object]]:
    """The ``WHERE`` clause (with its parameters) of runs of ``flow_id`` with ``status``."""
    terms: list[str] = []
    params: list[object] = []
    if flow_id is not None:
        terms.append("flow_id = ?")
        params.append(flow_id)
    if status is not None:
        terms.append("status = ?")
        params.append(status)
    return (" WHERE " + " AND ".join(terms) if terms else ""), params


def _event_checksum(envelope: EventEnvelope, body: str) -> int:
    return row_checksum(envelope.run_id, envelope.seq, envelope.at_us, envelope.event.kind, body)
