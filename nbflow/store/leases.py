"""Run leases: one process drives a run at a time (DESIGN §3, "Two writers").

A process that starts or resumes a run first takes its lease: a row naming the owner
(host, boot id, pid and the pid's start time, notebook) with an expiry that a heartbeat
thread renews while the run is driven. A second process is refused with
``run_in_progress`` while the owner lives. The owner is *gone* when, on this machine
(same host and boot id), its pid no longer runs or now belongs to another process; or,
seen from another machine, when its lease expired. A gone owner's lease is taken over, and
the takeover is recorded in the run's stream, in the same transaction.

The sequence-number check of every append stays as a second line: a paused owner whose
lease expired and was taken over fails on its next append instead of interleaving.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from nbflow.errors import NbflowError
from nbflow.model.errors import ErrorCategory
from nbflow.model.events import EventEnvelope, LeaseTakenOver
from nbflow.model.lease import LeaseOwner
from nbflow.store.database import Database, row_checksum
from nbflow.store.events import RUNNING, SqliteEventStore, now_us

LEASE_TTL_US = 30_000_000
"""A lease not renewed for this long is expired (it matters across machines only)."""
RENEW_EVERY_S = 10.0


class RunInProgressError(NbflowError):
    """Another live process drives this run."""

    category = ErrorCategory.CONFLICT


@dataclass(frozen=True)
class Lease:
    """The lease row of one run."""

    run_id: str
    owner: LeaseOwner
    renewed_us: int
    expires_us: int


@cache
def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot, or None if it is gone
    (a zombie, killed and not yet reaped by its parent, is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; fields follow the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    try:
        if fields[0] in ("Z", "X"):
            return None
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def current_owner(notebook: str | None) -> LeaseOwner:
    """This process, as a lease owner."""
    pid = os.getpid()
    return LeaseOwner(
        host=socket.gethostname(),
        boot_id=_boot_id(),
        pid=pid,
        pid_start=process_start(pid) or 0,
        notebook=notebook,
    )


def owner_gone(lease: Lease, now: int) -> str | None:
    """Why the owner of ``lease`` no longer drives its run, or None if it may."""
    owner = lease.owner
    if owner.host == socket.gethostname() and owner.boot_id == _boot_id():
        started = process_start(owner.pid)
        if started is None:
            return f"its process {owner.pid} is gone"
        if owner.pid_start and started != owner.pid_start:
            return f"its process {owner.pid} is gone (the pid now belongs to another process)"
        return None
    if now > lease.expires_us:
        return f"its lease was last renewed {(now - lease.renewed_us) // 1_000_000} s ago"
    return None


class SqliteLeases:
    """The ``leases`` table."""

    def __init__(self, database: Database, events: SqliteEventStore) -> None:
        self.database = database
        self._events = events
        self._held: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @staticmethod
    def new_lease(run_id: str, owner: LeaseOwner) -> Lease:
        """A lease of a run that nobody else can know of yet (written with its start)."""
        now = now_us()
        return Lease(run_id, owner, now, now + LEASE_TTL_US)

    def insert_in(self, conn: sqlite3.Connection, lease: Lease) -> None:
        """Write ``lease`` inside the caller's transaction (the one that starts its run)."""
        self._write(conn, lease)

    def acquire(self, run_id: str, owner: LeaseOwner) -> Lease:
        """Take the lease of ``run_id`` for ``owner``, or raise ``run_in_progress``.

        A lease held by a gone owner is taken over and a ``LeaseTakenOver`` event is
        appended to the run in the same transaction.
        """
        now = now_us()
        with self.database.transaction() as conn:
            held = self._read(conn, run_id)
            if held is not None and not held.owner.same_process(owner):
                reason = owner_gone(held, now)
                if reason is None:
                    raise _in_progress(held)
                self._record_takeover(conn, run_id, held, reason)
            lease = Lease(run_id, owner, now, now + LEASE_TTL_US)
            self._write(conn, lease)
        return lease

    def renew(self, lease: Lease) -> bool:
        """Extend ``lease``; False when it is no longer held by its owner."""
        now = now_us()
        with self.database.transaction() as conn:
            held = self._read(conn, lease.run_id)
            if held is None or not held.owner.same_process(lease.owner):
                return False
            self._write(conn, Lease(lease.run_id, lease.owner, now, now + LEASE_TTL_US))
        return True

    def release(self, lease: Lease) -> None:
        """Stop renewing ``lease`` and give it up (only if it is still its owner's)."""
        self.drop(lease)
        with self.database.transaction() as conn:
            self.release_in(conn, lease)

    def release_in(self, conn: sqlite3.Connection, lease: Lease) -> None:
        """Give ``lease`` up inside the caller's transaction (the one that ends its run)."""
        held = self._read(conn, lease.run_id)
        if held is not None and held.owner.same_process(lease.owner):
            conn.execute("DELETE FROM leases WHERE run_id = ?", (lease.run_id,))

    # -- renewal -----------------------------------------------------------------------

    def hold(self, lease: Lease) -> None:
        """Renew ``lease`` every :data:`RENEW_EVERY_S` until :meth:`drop`.

        One daemon thread per history renews every lease this process holds, started on
        first use: a run costs no thread of its own.
        """
        with self._lock:
            self._held[lease.run_id] = lease
            if self._renewer is None:
                self._renewer = threading.Thread(
                    target=self._renew_all, name="nbflow-leases", daemon=True
                )
                self._renewer.start()

    def drop(self, lease: Lease) -> None:
        """Stop renewing ``lease``."""
        with self._lock:
            self._held.pop(lease.run_id, None)

    def holds(self, lease: Lease) -> bool:
        """Whether this process still renews ``lease``."""
        with self._lock:
            return self._held.get(lease.run_id) is lease

    def close(self) -> None:
        """Stop the renewing thread (leases still held then expire or are taken over)."""
        self._stop.set()

    def _renew_all(self) -> None:
        while not self._stop.wait(RENEW_EVERY_S):
            with self._lock:
                leases = list(self._held.values())
            for lease in leases:
                with contextlib.suppress(NbflowError):  # busy or full: next round
                    if not self.renew(lease):
                        self.drop(lease)

    def lease(self, run_id: str) -> Lease | None:
        """The lease of ``run_id``, or None."""
        with self.database.reading() as conn:
            return self._read(conn, run_id)

    def live_owner(self, run_id: str) -> LeaseOwner | None:
        """The owner driving ``run_id`` right now, or None if nobody (alive) does."""
        held = self.lease(run_id)
        if held is None or owner_gone(held, now_us()) is not None:
            return None
        return held.owner

    def _record_takeover(
        self, conn: sqlite3.Connection, run_id: str, held: Lease, reason: str
    ) -> None:
        record = self._events.run_in(conn, run_id)
        if record is None or record.status != RUNNING:
            return  # an ended run: the stale lease is simply replaced
        event = LeaseTakenOver(previous=held.owner, reason=reason)
        envelope = EventEnvelope(
            run_id=run_id, seq=record.head_seq + 1, at_us=now_us(), event=event
        )
        self._events.append_in(conn, run_id, record.head_seq, [envelope])

    @staticmethod
    def _read(conn: sqlite3.Connection, run_id: str) -> Lease | None:
        row = conn.execute(
            "SELECT owner, renewed_us, expires_us, crc FROM leases WHERE run_id = ?", (run_id,)
        ).fetchone()
        if row is None:
            return None
        owner_json, renewed, expires, crc = row
        try:
            owner = LeaseOwner.model_validate_json(owner_json)
        except ValueError:
            owner = None
        if owner is None or row_checksum(run_id, owner_json, renewed, expires) != crc:
            # A damaged lease names nobody reliably: treat it as an owner long gone.
            owner = LeaseOwner(host="?", boot_id="?", pid=0, pid_start=0)
            return Lease(run_id, owner, 0, 0)
        return Lease(run_id, owner, renewed, expires)

    @staticmethod
    def _write(conn: sqlite3.Connection, lease: Lease) -> None:
        owner_json = lease.owner.model_dump_json()
        conn.execute(
            "INSERT OR REPLACE INTO leases (run_id, owner, renewed_us, expires_us, crc)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                lease.run_id,
                owner_json,
                lease.renewed_us,
                lease.expires_us,
                row_checksum(lease.run_id, owner_json, lease.renewed_us, lease.expires_us),
            ),
        )


def _in_progress(held: Lease) -> RunInProgressError:
    return RunInProgressError(
        "run_in_progress",
        f"run {held.run_id[:8]} is being driven right now by {held.owner.describe()}",
        name=held.run_id,
        hint="wait for it to finish, or stop that kernel or process; once it is gone the "
        "run can be resumed here",
        details={"owner": held.owner.model_dump()},
    )
