"""Appending one run's events with the sequence number the writer expects."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from functools import partial

from nbflow.engine.secret_guard import SecretGuard
from nbflow.model.events import Event, EventEnvelope, RunCompleted
from nbflow.store.events import EventStore, Within
from nbflow.store.leases import Lease, SqliteLeases


class RunWriter:
    """Appends a run's events, tracking its head; a conflicting writer raises on append.

    Every event passes the ``guard`` first (see :mod:`.secret_guard`).

    ``stage`` holds an event back so that it is committed together with the next append:
    the engine stages ``StateCompleted`` and commits it with the next ``StateEntered``, one
    durable transaction per state instead of two. Nothing runs between the two, so the
    window is no wider than the commit itself; :meth:`flush` commits whatever is staged.
    """

    def __init__(
        self,
        events: EventStore,
        run_id: str,
        head_seq: int,
        listeners: Sequence[Callable[[EventEnvelope], None]] = (),
        guard: SecretGuard | None = None,
        leases: SqliteLeases | None = None,
        lease: Lease | None = None,
    ) -> None:
        self._events = events
        self._guard = guard
        self._leases = leases
        self.lease = lease
        """The lease this writer's process drives the run under; given up in the same
        transaction as ``RunCompleted``."""
        self._listeners = listeners
        self.run_id = run_id
        self.head_seq = head_seq
        self._staged: list[Event] = []
        self._staged_within: list[Within] = []

    def append(self, *events: Event, within: Within | None = None) -> list[EventEnvelope]:
        """Durably append the staged events and ``events`` (and ``within``, in the same
        transaction)."""
        batch = [*self._staged, *events]
        if not batch:
            return []
        for staged in self._staged_within:
            within = _both(within, staged)
        if self._guard is not None:
            batch = [self._guard.check(event) for event in batch]
        ending = self.lease is not None and any(isinstance(e, RunCompleted) for e in batch)
        if ending and self._leases is not None and self.lease is not None:
            release = partial(self._leases.release_in, lease=self.lease)
            within = _both(within, release)
        envelopes = self._events.append(self.run_id, self.head_seq, batch, within=within)
        if ending and self._leases is not None and self.lease is not None:
            self._leases.drop(self.lease)
        self._staged.clear()
        self._staged_within.clear()
        self.head_seq = envelopes[-1].seq
        for listener in self._listeners:
            for envelope in envelopes:
                listener(envelope)
        return envelopes

    def stage(self, event: Event, within: Within | None = None) -> None:
        """Queue ``event`` (and ``within``) to be committed with the next append or flush."""
        self._staged.append(event)
        if within is not None:
            self._staged_within.append(within)

    def flush(self) -> None:
        """Commit staged events, if any."""
        self.append()


def _both(first: Within | None, second: Within) -> Within:
    if first is None:
        return second

    def both(conn: sqlite3.Connection) -> None:
        first(conn)
        second(conn)

    return both
